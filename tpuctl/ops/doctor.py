"""`tpuctl doctor [NAME]`: what stands between this machine and a working slice, checked in one
place. This machine first (configuration, credentials, the API, tpuctl's key, OpenSSH's
config, the way in); then, with a node, the node (state, every worker registered, the login)
and each worker through remote/doctor.sh (disk, TPU holders, lockfile, Python, venv support,
package versions, TPU metadata, the coordinator port to worker 0's internal address), plus
what only the client can judge: SSH latency, clock offset, versions agreeing across workers.

It reads; the one change it may make is the one every command makes to reach workers
(`ensure_access`: tpuctl's key into the node's metadata, or imported through OS Login).
Verdicts and fixes live in ops/doctor_checks.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpuctl.cloud.groups import worker_of
from tpuctl.errors import NotFoundError, RemoteCommandError, TpuctlError
from tpuctl.model import Access, Slice
from tpuctl.ops.access import ensure_access, login_mode, missing_workers, require_ready
from tpuctl.ops.doctor_checks import (
    Check,
    DoctorReport,
    agree,
    clock_check,
    parse_lines,
    registered_as,
)
from tpuctl.ops.ports import Ports
from tpuctl.ops.route import WAYS_IN
from tpuctl.ops.session import CONNECT_TIMEOUT, SliceSession

DEFAULT_PORT = 8476  # JAX's coordinator port on TPU VMs, the one firewall rules name


@dataclass(frozen=True)
class DoctorRequest:
    name: str | None = None  # None: this machine's checks only
    # the coordinator port tried from every worker to worker 0; None: DEFAULT_PORT and
    # also the port of each worker's latest run (check `run-port`), the one JAX really uses
    port: int | None = None
    port_timeout: float = 3.0  # seconds before an unanswered port counts as filtered


Credentials = Callable[[str | None], Check]
Adc = Callable[[], tuple[bool, str]]  # Application Default Credentials: (found?, what/why)


def credentials_check(endpoint: str | None, adc: Adc) -> Check:
    """The emulator's token for a custom endpoint, else Application Default Credentials."""
    if endpoint is not None:
        from tpuctl.config import api_token

        token, source = api_token(endpoint)
        if token:
            return Check("credentials", "ok", detail=f"token from {source}")
        return Check("credentials", "warn", detail=f"no token for {endpoint}: calls go "
                     "anonymous (an emulator answers 401)")
    found, what = adc()
    return Check("credentials", "ok" if found else "fail", detail=what)


def key_check(path: Path) -> Check:
    """tpuctl's private key: absent (made on first use), or 0600 and ours."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check("ssh-key", "ok", detail=f"none yet at {path} (made on first use)")
    if st.st_uid != os.getuid():
        return Check("ssh-key", "fail", detail=f"{path} belongs to uid {st.st_uid}, not you")
    if st.st_mode & 0o077:
        return Check("ssh-key", "fail", {"mode": f"{st.st_mode & 0o777:o}"},
                     f"{path} is readable by others")
    return Check("ssh-key", "ok", {"mode": f"{st.st_mode & 0o777:o}"})


def ssh_config_check(home: Path) -> Check:
    """OpenSSH (for `tpuctl ssh`) and a ~/.ssh/config it will read: OpenSSH refuses a
    config that another user owns or that group or others can write ("Bad owner or
    permissions")."""
    config = home / ".ssh" / "config"
    try:
        st = config.stat()
    except FileNotFoundError:
        st = None
    if st is not None and (st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022):
        return Check("ssh-config", "fail", {"mode": f"{st.st_mode & 0o777:o}"},
                     f"{config}: bad owner or permissions, OpenSSH refuses to run")
    if shutil.which("ssh") is None:
        return Check("ssh-config", "warn", detail="no OpenSSH client (ssh) on PATH: "
                     "`tpuctl ssh` needs it (every other command does without)")
    return Check("ssh-config", "ok", detail=str(config) if st is not None else "")


def _local(ports: Ports, req: DoctorRequest, credentials: Credentials
           ) -> tuple[list[Check], Slice | None, int | None]:
    """This machine's checks; the node (when named and readable); why to stop early."""
    checks: list[Check] = []
    cloud = ports.cloud
    try:
        where = {"project": cloud.project, "zone": cloud.zone}
        endpoint = cloud.endpoint
    except TpuctlError as e:
        checks.append(Check("config", "fail", detail=e.message))
        return checks, None, int(e.exit_code)
    checks.append(Check("config", "ok", {**where, "endpoint": endpoint or "gcp"}))
    checks.append(credentials(endpoint))
    checks.append(key_check(ports.local.key_path()))
    checks.append(ssh_config_check(Path.home()))
    checks.append(Check("route", "ok", {"source": ports.route.source},
                        ports.route.describe()))
    started = time.monotonic()
    try:
        if req.name is None:
            found = len(cloud.list_nodes())
            checks.append(Check("api", "ok", {"latency_ms": _ms(started), "nodes": str(found)}))
            return checks, None, None
        sl = cloud.get_node(req.name)
    except NotFoundError as e:
        checks.append(Check("api", "ok", {"latency_ms": _ms(started)}))
        checks.append(Check("node", "fail", detail=e.message))
        return checks, None, int(e.exit_code)
    except TpuctlError as e:
        checks.append(Check("api", "fail", detail=e.message))
        return checks, None, int(e.exit_code)
    checks.append(Check("api", "ok", {"latency_ms": _ms(started)}))
    return checks, sl, None


def _node(ports: Ports, sl: Slice) -> tuple[list[Check], int | None]:
    """The node's own checks: READY, every worker registered, the login, the way in."""
    try:
        require_ready(sl)
    except TpuctlError as e:
        return [Check("node", "fail", {"state": sl.state}, e.message)], int(e.exit_code)
    checks = [Check("node", "ok", {"state": sl.state, "type": sl.accelerator_type})]
    missing = missing_workers(sl)
    have = len(sl.workers)
    if missing:
        checks.append(Check("workers", "fail", {"registered": str(have)},
                            f"missing: {', '.join(f'w{i}' for i in missing)}"
                            + ("" if have else " (the node reports no workers)")))
    else:
        checks.append(Check("workers", "ok", {"registered": str(have)}))
    oslogin, why = login_mode(ports.cloud, sl.metadata)
    checks.append(Check("login", "ok", {"mode": "oslogin" if oslogin else "metadata"}, why))
    route = ports.route
    stranded = [w.index for w in sl.workers if not w.external_ip]
    if stranded and not route.tunnelled and not route.internal_ip:
        checks.append(Check("route", "fail", {"no_external_ip": str(len(stranded))},
                            "the workers have no external IP (created with --internal-ips): "
                            f"{WAYS_IN}"))
    return checks, None


async def _workers(session: SliceSession, req: DoctorRequest) -> dict[int, tuple[Check, ...]]:
    """Each registered worker's checks: SSH and its latency, the clock, then doctor.sh."""
    sl = session.slice
    out: dict[int, list[Check]] = {w.index: [] for w in sl.workers}
    try:
        await session.install_scripts()
    except RemoteCommandError as e:  # e.g. no space left to unpack tpuctl's scripts
        for i in out:
            if i not in session.unreachable:
                out[i].append(Check("ssh", "fail", detail=e.message[:300]))
    for i, r in session.unreachable.items():
        out[i].append(Check("ssh", "fail", detail=(r.error or "unreachable")[:300]))
    sent = time.time()
    clocks = await session.run("date +%s.%N", capture=True, timeout=30,
                               indices=[i for i in out if not out[i]])
    received = time.time()
    reached = []
    for r in clocks:
        if r.ok and not out[r.index]:
            out[r.index].append(Check("ssh", "ok", {"latency_ms": f"{r.duration * 1000:.0f}"}))
            out[r.index].append(clock_check(r.stdout.strip(), sent, received))
            reached.append(r.index)
        elif not out[r.index]:
            out[r.index].append(Check("ssh", "fail", detail=(r.error or f"exit {r.exit_code}")
                                      [:300]))
    if not reached:
        return {i: tuple(c) for i, c in out.items()}
    target = f"{sl.workers[0].ip}:{req.port or DEFAULT_PORT}"
    results = await session.script("doctor", "current", target, f"{req.port_timeout:g}",
                                   "latest" if req.port is None else "-",
                                   indices=reached, capture=True,
                                   timeout=req.port_timeout + 60)
    packages: dict[int, Check] = {}
    for r in results:
        if not r.ok:
            out[r.index].append(Check("doctor", "fail", detail=(
                r.error or f"doctor.sh exit {r.exit_code}")[:300]))
            continue
        for c in parse_lines(r.stdout):
            if c.name == "clock":
                continue  # judged by the client (clock_check), not by the worker alone
            c = registered_as(c, worker_of(sl, r.index)[1])
            if c.name == "packages":
                packages[r.index] = c
            out[r.index].append(c)
    agreed = agree(packages)
    return {i: tuple(agreed.get(i, c) if c.name == "packages" else c for c in checks)
            for i, checks in out.items()}


def run_doctor(ports: Ports, req: DoctorRequest, *, credentials: Credentials) -> DoctorReport:
    """Every check this machine and (with a name) the node's workers can answer.
    `credentials`: the check of this machine's credentials for an endpoint (None: GCP)."""
    if req.name is not None:
        from tpuctl.naming import validate_node_name

        validate_node_name(req.name)
    local, sl, stopped = _local(ports, req, credentials)
    if sl is None or stopped is not None:
        return DoctorReport(req.name, tuple(local), stopped=stopped)
    node, stopped = _node(ports, sl)
    local += node
    if stopped is not None or any(c.bad for c in node if c.name == "route") or not sl.workers:
        return DoctorReport(req.name, tuple(local), stopped=stopped)
    access = ensure_access(ports, sl.name, partial=True)
    workers = asyncio.run(_on_workers(ports, access, req))
    return DoctorReport(req.name, tuple(local), workers)


async def _on_workers(ports: Ports, access: Access, req: DoctorRequest
                      ) -> dict[int, tuple[Check, ...]]:
    from tpuctl.ops import worker_cache
    from tpuctl.ops.route import ssh_targets

    sl = access.slice
    pool = ports.connect(ssh_targets(sl, access.login.user, ports.route),
                         key_path=ports.local.key_path(),
                         pool=worker_cache.node_identity(ports.cloud, sl.name), shared=False,
                         connect_timeout=CONNECT_TIMEOUT, connect_attempts=2,
                         max_concurrency=64)
    session = SliceSession(ports=ports, slice=sl, pool=pool, login=access.login)
    try:
        return await _workers(session, req)
    finally:
        await session.close()


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f}"
