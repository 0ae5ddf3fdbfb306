"""`launch`: start one run on every worker, detached (setsid nohup), and return at once."""

from __future__ import annotations

import hashlib
import secrets as pyrandom
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.aio import gather_or_cancel
from tpuctl.errors import TpuctlError, UsageError
from tpuctl.model import Slice
from tpuctl.ops.results import StopResult as StopResult
from tpuctl.ops.results import WorkerStop as WorkerStop
from tpuctl.ops.results import stop_result
from tpuctl.ops.secrets import render_env
from tpuctl.ops.session import SliceSession, is_unreachable, raise_on_failure
from tpuctl.remote import frame

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports

# launch.sh's refusal codes, turned into typed errors that say what to do
_REFUSALS: dict[int, tuple[type[TpuctlError], str]] = {
    20: (UsageError, "run `tpuctl bootstrap NAME` (or `tpuctl up RECIPE`) first"),
    21: (UsageError, "run `tpuctl sync NAME` so every worker has the commit"),
    22: (UsageError, "pass --replace to stop it and start this one, or `tpuctl stop NAME`"),
    23: (UsageError, "stop whatever holds the TPU (`tpuctl stop NAME`), or pass --force to "
         "kill the holders and clear the lockfile"),
    24: (UsageError, "pick another --run-id"),
}


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{pyrandom.token_hex(2)}"


def coordinator_port(run_id: str) -> int:
    """A per-run port: a fixed one would collide between runs (and between emulated slices,
    which share one kernel and one port space)."""
    return 20000 + int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) % 20000


def validate_run_id(run_id: str) -> str:
    from tpuctl.validate import RUN_ID_RE

    if not RUN_ID_RE.match(run_id):
        raise UsageError(f"invalid run id {run_id!r}",
                         hint="letters, digits, '.', '_' and '-', starting with a letter or digit")
    return run_id


@dataclass(frozen=True)
class LaunchSpec:
    command: str  # bash source for the job
    env: Mapping[str, str]
    workdir: str  # relative to $HOME, e.g. work/<repo>
    venv_hash: str | None = None
    commit: str | None = None
    replace: bool = False
    force: bool = False  # kill stale holders of the TPU devices and the lockfile first
    timeout: float | None = None  # enforced on each worker: TERM, then KILL, marked timed out
    run_id: str | None = None
    # per-worker command overrides (serving: each rank's argv differs by its node rank)
    per_worker_command: Mapping[int, str] | None = None
    serve_port: int | None = None  # rank 0's HTTP port, recorded for `status` health checks
    # the coordinator's port when the caller chose it (serving: the --dist-init-addr port,
    # so JAX's coordinator binds where the ranks meet); default: from the run id
    coordinator_port: int | None = None

    def coordinator(self, sl: Slice, run_id: str) -> str:
        """worker 0's address and the coordinator's port (`JAX_COORDINATOR_ADDRESS`)."""
        return f"{sl.workers[0].ip}:{self.coordinator_port or coordinator_port(run_id)}"


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    node: str
    workers: int
    coordinator: str

    def to_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "node": self.node, "workers": self.workers,
                "coordinator": self.coordinator}


def worker_env(session: SliceSession, spec: LaunchSpec, run_id: str, index: int
               ) -> dict[str, str]:
    workers = session.slice.workers
    coord = spec.coordinator(session.slice, run_id)
    env = dict(spec.env)
    # JAX's coordinator listens on worker 0's own (internal) address, not on every interface
    # (its default, `[::]:port`): never on a VM's external IP, and on the emulator, whose
    # workers share this machine's network, on loopback only, not on the machine's LAN
    env.setdefault("JAX_COORDINATOR_BIND_ADDRESS", coord)
    env.update({
        "TPUCTL_RUN_ID": run_id,
        "TPUCTL_WORKER_ID": str(index),
        "TPUCTL_NUM_WORKERS": str(len(workers)),
        "TPUCTL_NODE": session.slice.name,
        "JAX_COORDINATOR_ADDRESS": coord,
        "JAX_NUM_PROCESSES": str(len(workers)),
        "JAX_PROCESS_ID": str(index),
    })
    if spec.serve_port is not None:
        env["TPUCTL_SERVE_URL"] = f"http://{workers[0].ip}:{spec.serve_port}"
    if session.slice.slices > 1:  # a multislice group: what libtpu and JAX read across slices
        from tpuctl.cloud.groups import megascale_env

        env.update(megascale_env(session.slice, index))
    return env


def _refusal(results: list, what: str) -> None:
    for r in results:
        if r.exit_code in _REFUSALS and r.error is None:
            cls, hint = _REFUSALS[r.exit_code]
            detail = r.stdout.strip().splitlines()[-1:] or [f"exit {r.exit_code}"]
            raise cls(f"{what} refused on w{r.index}: {detail[0]}", hint=hint)
    raise_on_failure(results, what)


async def launch(session: SliceSession, spec: LaunchSpec) -> LaunchResult:
    run_id = validate_run_id(spec.run_id or new_run_id(session.slice.name))
    if spec.timeout is not None and spec.timeout < 1:
        raise UsageError(f"invalid --timeout {spec.timeout}", hint="give 1 or more seconds")
    if not spec.command.strip() and not spec.per_worker_command:
        raise UsageError("no command to launch", hint="give --recipe FILE or -- CMD ...")
    from tpuctl.ops.startup import wait_startup

    await wait_startup(session)  # never race the guest agent's startup script
    calls = {}
    for i in session.indices:
        command = (spec.per_worker_command or {}).get(i, spec.command)
        if "\0" in command:  # the payload's separator: the rest would run as the env file
            raise UsageError("the command holds a NUL byte", hint="remove it from the recipe's "
                             "`command` (or the arguments after --)")
        payload = frame(command.encode() + b"\0"
                        + render_env(worker_env(session, spec, run_id, i)))
        args = [run_id, str(i), spec.workdir, spec.venv_hash or "-", spec.commit or "-",
                "1" if spec.replace else "0", "1" if spec.force else "0",
                str(int(spec.timeout)) if spec.timeout else "-"]
        calls[i] = (args, payload)
    # every preflight on every worker first: a refusal anywhere starts nothing anywhere
    # (launch.sh's checks, and doctor's fast subset beside them on the same connections)
    from tpuctl.ops.preflight import preflight, refuse_unhealthy

    checks, health = await gather_or_cancel([
        session.script_each("launch", {i: (["check", *a], p) for i, (a, p) in calls.items()},
                            capture=True, merge_stderr=True, timeout=120),
        preflight(session, spec.coordinator(session.slice, run_id))])
    _refusal(checks, "launch")
    refuse_unhealthy(session.slice, health)
    started = await session.script_each(
        "launch", {i: (["start", *a], p) for i, (a, p) in calls.items()},
        capture=True, merge_stderr=True, timeout=120, idempotent=False)
    if any(not r.ok for r in started):
        await stop_run(session, run_id, grace=5)  # nothing half-started is left running
        _refusal(started, "launch")
    from tpuctl.ops.ledgernotes import note_run

    note_run(session.ports, "run_start", session.slice, run_id)
    coord = spec.coordinator(session.slice, run_id)
    return LaunchResult(run_id=run_id, node=session.slice.name, workers=len(started),
                        coordinator=coord)


async def stop_run(session: SliceSession, run_id: str | None, *, grace: float = 10.0
                   ) -> StopResult:
    """Stop the run on every worker that can be reached; the others are named."""
    results = await session.script("stop", run_id or "-", str(int(grace)), capture=True,
                                   timeout=grace + 60)
    raise_on_failure([r for r in results if not is_unreachable(r)], "stopping the run")
    result = stop_result(session.slice.name, run_id, results)
    from tpuctl.ops.ledgernotes import note_run_end

    for rid in {w.run_id for w in result.workers if w.result in ("terminated", "killed")}:
        note_run_end(session.ports, session.slice, rid)
    return result


@dataclass(frozen=True)
class LaunchRequest:
    name: str
    command: tuple[str, ...] = ()  # argv after --, quoted once (or a recipe)
    recipe: Path | None = None
    run_id: str | None = None
    replace: bool = False
    force: bool = False
    timeout: float | None = None
    env: tuple[str, ...] = ()  # KEY=VALUE (not for secrets or hyperparameters)


def parse_env_flags(items: Sequence[str]) -> dict[str, str]:
    """`--env KEY=VALUE` options, held to the rules of a recipe's `env`."""
    from tpuctl.recipes.schema import check_env_keys

    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"invalid --env {k!r}: expected KEY=VALUE", hint="e.g. --env A=1")
        out[k] = v
    try:
        check_env_keys(out)
    except ValueError as e:
        raise UsageError(f"invalid --env: {e}", hint="KEY=VALUE with KEY made of letters, "
                         "digits and _; TPUCTL_* and JAX_* distribution variables are "
                         "set by tpuctl") from None
    return out


def check(req: LaunchRequest) -> Callable[[Slice], LaunchSpec]:
    """Everything checkable here; the job for the node's slice."""
    from tpuctl.naming import validate_node_name

    validate_node_name(req.name)
    if req.run_id:
        validate_run_id(req.run_id)
    if (req.recipe is None) == (not req.command):
        raise UsageError("give either --recipe FILE or a command after --",
                         hint="e.g. tpuctl launch NAME -- python train.py cfg.yaml")
    if req.recipe is not None:
        from tpuctl.ops.prepared import launch_spec, prepare_file

        prepared = prepare_file(req.recipe, req.name)
        return lambda sl: launch_spec(prepared, sl, run_id=req.run_id, replace_run=req.replace,
                                      force=req.force, timeout=req.timeout)
    env = parse_env_flags(req.env)
    workdir = "."
    try:
        from tpuctl import gitrepo

        workdir = f"work/{gitrepo.inspect().name}"  # where `sync` put this repository
    except UsageError:
        pass
    line = shlex.join(req.command)
    return lambda sl: LaunchSpec(command=line, env=env, workdir=workdir, venv_hash="current",
                                 replace=req.replace, force=req.force, run_id=req.run_id,
                                 timeout=req.timeout)


def launch_node(ports: Ports, req: LaunchRequest) -> LaunchResult:
    """The `launch` command: start the job on every worker and return its run id."""
    from tpuctl.ops.session import on_slice

    make = check(req)
    return on_slice(ports, req.name, lambda s: launch(s, make(s.slice)))


@dataclass(frozen=True)
class StopRequest:
    name: str
    run_id: str | None = None  # default: the latest
    grace: float = 10.0  # seconds between TERM and KILL


def stop_node(ports: Ports, req: StopRequest) -> StopResult:
    """The `stop` command, on every worker that can be reached."""
    from tpuctl.ops.session import on_slice

    if req.run_id:
        validate_run_id(req.run_id)
    return on_slice(ports, req.name, lambda s: stop_run(s, req.run_id, grace=req.grace),
                    shared=True)
