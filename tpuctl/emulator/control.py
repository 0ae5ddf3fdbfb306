"""The background emulator, controlled from this machine: started as a detached process,
stopped by its pid, found by its info file, and driven through its admin API (faults,
preemption). Each verb returns a typed result or raises a typed error; `tpuctl emulator`
only parses flags and renders.

Light on purpose (no aiohttp, asyncssh, google-cloud): the CLI imports it for every
`tpuctl emulator` command; urllib is imported only by the calls that use it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpuctl.errors import CloudError, NotFoundError, TimeoutExpired, TpuctlError, UsageError
from tpuctl.paths import emulator_dir

INFO_FILE = "emulator.json"
LOG_FILE = "emulator.log"


# -------------------------------------------------------------------- where it runs

def state_dir_of(state_dir: Path | None) -> Path:
    """The state dir an emulator runs (or would run) from: the given one, else the default."""
    return (state_dir or emulator_dir()).resolve()


def private_state_dir(state_dir: Path | None) -> Path:
    """The state dir, made 0700 (it holds the token, worker homes and secrets)."""
    from tpuctl.paths import private_dir

    sd = state_dir_of(state_dir)
    try:
        return private_dir(sd)
    except PermissionError as e:
        raise UsageError(str(e), hint="pass a --state-dir of your own") from None


def read_info(state_dir: Path) -> dict[str, Any] | None:
    """emulator.json of the emulator running from `state_dir`, None when none runs."""
    from tpuctl.config import emulator_info

    return emulator_info(state_dir)


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """emulator.json without the token (it is printed nowhere)."""
    return {k: v for k, v in info.items() if k != "token"}


@dataclass(frozen=True)
class AdminTarget:
    """A running emulator's endpoint and the token its admin calls need."""

    endpoint: str
    token: str | None


def admin_target(api_endpoint: str | None, state_dir: Path | None) -> AdminTarget:
    """--api-endpoint, else --state-dir's emulator, else TPUCTL_API_ENDPOINT, else the
    default state dir's emulator."""
    from tpuctl.config import api_token

    if api_endpoint:
        return AdminTarget(api_endpoint.rstrip("/"), api_token(api_endpoint)[0])
    if state_dir is None and os.environ.get("TPUCTL_API_ENDPOINT"):
        endpoint = os.environ["TPUCTL_API_ENDPOINT"].rstrip("/")
        return AdminTarget(endpoint, api_token(endpoint)[0])
    sd = state_dir_of(state_dir)
    info = read_info(sd)
    if info is None:
        raise NotFoundError(f"no emulator running from {sd}",
                            hint="start it with `tpuctl emulator start`, or pass --api-endpoint")
    return AdminTarget(str(info["endpoint"]).rstrip("/"), info.get("token"))


def admin(target: AdminTarget, method: str, path: str,
          body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
    """One admin call to a running emulator; its error envelope becomes a typed error."""
    import urllib.error  # here, not at the top: urllib.request costs ~15 ms of --help
    import urllib.parse
    import urllib.request

    endpoint, token = target.endpoint, target.token
    url = f"{endpoint}/emulator/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # http(s) endpoint
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {e.code}"
        if e.code == 404:
            raise NotFoundError(message, hint="check the node name, --project and --zone "
                                "(`tpuctl list`), and that the endpoint is the emulator's"
                                ) from None
        if e.code == 400:
            raise UsageError(message) from None
        if e.code == 401:
            raise CloudError(f"the emulator at {endpoint} refused the call: {message}",
                             hint="admin calls need its token: run them as the user who "
                             "started it, with --state-dir or TPUCTL_API_TOKEN_FILE") from None
        raise CloudError(f"emulator admin call failed: {message}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CloudError(f"cannot reach the emulator at {endpoint} ({e})",
                         hint="is it running? `tpuctl emulator status`") from None


# -------------------------------------------------------------------- its life

@dataclass(frozen=True)
class ServeOptions:
    """How an emulator serves: ports (0: a free one), delays, faults active from the start."""

    port: int = 0
    ssh_port: int = 0
    create_delay: float = 1.0
    fault_items: tuple[str, ...] = ()  # as given (`KEY=VALUE`), for a child's argv
    faults: dict[str, Any] | None = None  # the same, parsed and validated
    seed: int | None = None


def serve(state_dir: Path, options: ServeOptions, on_ready: Callable[[str], None]) -> None:
    """Run the emulator in this process until interrupted (Ctrl-C ends it quietly)."""
    import asyncio

    from tpuctl.emulator.server import serve as run_server
    from tpuctl.emulator.server import use_pidfd_child_watcher

    use_pidfd_child_watcher()
    try:
        asyncio.run(run_server(options.port, state_dir, ssh_port=options.ssh_port,
                               create_delay=options.create_delay, on_ready=on_ready,
                               faults=options.faults or {}, seed=options.seed))
    except KeyboardInterrupt:
        pass


@dataclass(frozen=True)
class Started:
    """A running background emulator: `info` (emulator.json), and what this call did."""

    state_dir: Path
    info: dict[str, Any]
    already_running: bool
    faults_applied: bool  # --fault/--seed given to an emulator that was already running


def start(state_dir: Path, options: ServeOptions, *, timeout: float) -> Started:
    """Start the emulator in the background unless it runs (idempotent); to one that runs,
    the faults and seed are applied at run time."""
    sd = state_dir
    info = read_info(sd)
    applied = False
    if info is not None and (options.faults or options.seed is not None):
        body: dict[str, Any] = dict(options.faults or {})
        if options.seed is not None:
            body["seed"] = options.seed
        admin(AdminTarget(str(info["endpoint"]).rstrip("/"), info.get("token")),
              "POST", "faults", body)
        applied = True
    if info is not None:
        return Started(sd, info, already_running=True, faults_applied=applied)
    (sd / INFO_FILE).unlink(missing_ok=True)
    log = os.fdopen(os.open(sd / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                    "ab")  # handed to the child
    argv = [sys.executable, "-m", "tpuctl", "emulator", "serve", "--state-dir", str(sd),
            "--port", str(options.port), "--ssh-port", str(options.ssh_port),
            "--create-delay", str(options.create_delay)]
    for item in options.fault_items:
        argv += ["--fault", item]
    if options.seed is not None:
        argv += ["--seed", str(options.seed)]
    # cwd: the state dir, so `python -m tpuctl` never imports a stray ./tpuctl
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True, cwd=sd)
    log.close()
    deadline = time.monotonic() + timeout
    while (info := read_info(sd)) is None:
        if proc.poll() is not None:
            tail = (sd / LOG_FILE).read_text(errors="replace").strip().splitlines()[-3:]
            raise TpuctlError(f"the emulator exited with code {proc.returncode}: "
                              + " | ".join(tail), hint=f"see {sd / LOG_FILE}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise TimeoutExpired(f"the emulator did not start within {timeout:.0f}s",
                                 hint=f"see {sd / LOG_FILE}")
        time.sleep(0.1)
    return Started(sd, info, already_running=False, faults_applied=False)


@dataclass(frozen=True)
class Stopped:
    """The pid of the emulator that was stopped; None when none was running."""

    pid: int | None


def stop(state_dir: Path, *, timeout: float) -> Stopped:
    """SIGTERM the background emulator (its workers' processes end with it), SIGKILL it after
    `timeout`; then its info file and token go."""
    info = read_info(state_dir)
    if info is None:
        return Stopped(None)
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    (state_dir / INFO_FILE).unlink(missing_ok=True)
    (state_dir / "token").unlink(missing_ok=True)  # a stopped emulator's token opens nothing
    return Stopped(pid)


@dataclass(frozen=True)
class Status:
    """Whether an emulator runs from `state_dir`, and its (public) info."""

    state_dir: Path
    info: dict[str, Any] | None

    @property
    def running(self) -> bool:
        return self.info is not None

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, **public_info(self.info or {}),
                "state_dir": str(self.state_dir)}


def status(state_dir: Path) -> Status:
    return Status(state_dir, read_info(state_dir))


# -------------------------------------------------------------------- admin calls

@dataclass(frozen=True)
class FaultState:
    """A running emulator's active faults, the seed of their random decisions, and its
    settings' effective values (network mode, guest-agent delay, OS Login account)."""

    seed: Any
    faults: dict[str, Any]
    settings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "faults": self.faults, "settings": self.settings or {}}


def set_faults(target: AdminTarget, values: dict[str, Any], *, clear: bool = False,
               seed: int | None = None) -> FaultState:
    """Clear the faults (when `clear`), then merge `values` and `seed` into them; with
    neither, just read them."""
    result: Any = None
    if clear:
        result = admin(target, "DELETE", "faults")
    if values or seed is not None:
        body: dict[str, Any] = dict(values)
        if seed is not None:
            body["seed"] = seed
        result = admin(target, "POST", "faults", body)
    elif not clear:
        result = admin(target, "GET", "faults")
    return FaultState(result.get("seed"), dict(result.get("faults") or {}),
                      dict(result.get("settings") or {}))


@dataclass(frozen=True)
class Preempted:
    """A preemption done (`after` None: the node as the API shows it now) or scheduled."""

    node: str
    after: float | None
    response: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.response


def preempt(target: AdminTarget, project: str, zone: str, node: str,
            after: float | None = None) -> Preempted:
    """Preempt a node as GCP preempts a spot VM (PREEMPTED, its processes killed), now or
    `after` seconds from now (a timer in the emulator)."""
    name = f"projects/{project}/locations/{zone}/nodes/{node}"
    query = {"after": repr(after)} if after is not None else None
    return Preempted(node, after, admin(target, "POST", f"{name}:preempt", {}, query))


# -------------------------------------------------------------------- capacity a project owns

def create_reservation(target: AdminTarget, project: str, zone: str, reservation_id: str,
                       accelerator_type: str, count: int = 1) -> dict[str, Any]:
    """A reservation of `count` x `accelerator_type` worth of chips (admin call; GCP sells
    them): reserved nodes and queued resources with a reservationName draw on it."""
    body = {"reservationId": reservation_id, "acceleratorType": accelerator_type,
            "count": count}
    result: dict[str, Any] = admin(target, "POST",
                                   f"projects/{project}/locations/{zone}/reservations", body)
    return result


def list_reservations(target: AdminTarget, project: str, zone: str) -> list[dict[str, Any]]:
    got = admin(target, "GET", f"projects/{project}/locations/{zone}/reservations")
    return list(got.get("reservations") or [])


def delete_reservation(target: AdminTarget, project: str, zone: str,
                       reservation_id: str) -> None:
    admin(target, "DELETE", f"projects/{project}/locations/{zone}/reservations/{reservation_id}")


def create_disk(target: AdminTarget, project: str, zone: str, name: str,
                size_gb: int = 10) -> dict[str, Any]:
    """A blank Compute disk a node can attach as `dataDisks[].sourceDisk`
    (`projects/P/zones/Z/disks/NAME`)."""
    result: dict[str, Any] = admin(target, "POST", f"projects/{project}/zones/{zone}/disks",
                                   {"name": name, "sizeGb": size_gb})
    return result


def list_disks(target: AdminTarget, project: str, zone: str) -> list[dict[str, Any]]:
    return list(admin(target, "GET", f"projects/{project}/zones/{zone}/disks").get("disks") or [])


def delete_disk(target: AdminTarget, project: str, zone: str, name: str) -> None:
    admin(target, "DELETE", f"projects/{project}/zones/{zone}/disks/{name}")
