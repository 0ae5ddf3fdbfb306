"""`doctor`'s fast subset, run by `launch` (and so `up` and `serve`) on every worker before
anything starts: a full disk, a host whose TPU metadata is blank (it never joined its slice),
an image without python3, or a firewall that drops the run's own coordinator port (the port
JAX_COORDINATOR_ADDRESS names, not 8476) would make a run fail later, or hang in
jax.distributed, on a slice that looked fine. Read-only (remote/doctor.sh without its venv
check); it runs beside launch's own preflight on the same connections, so it adds no round
trip."""

from __future__ import annotations

from collections.abc import Sequence

from tpuctl.errors import RemoteCommandError
from tpuctl.model import Slice
from tpuctl.ops.doctor_checks import FIXES, parse_lines, registered_as
from tpuctl.ops.session import SliceSession, raise_on_failure
from tpuctl.workers.base import WorkerResult

# what refuses a launch (the TPU's holders are launch.sh's own check, with --force)
BLOCKING = ("disk-home", "disk-tmp", "python", "metadata", "port")
PORT_TIMEOUT = "1"  # seconds: inside a VPC a SYN is answered in well under a millisecond


def port_target(sl: Slice, coordinator: str | None) -> str:
    """doctor.sh's ADDR:PORT for this launch: the run's own coordinator (worker 0's internal
    address and the port JAX will use), tried from every worker; "-" (skip) for a lone host,
    whose one process never connects to a coordinator, and for a caller that names none."""
    return coordinator if coordinator and len(sl.workers) > 1 else "-"


async def preflight(session: SliceSession, coordinator: str | None = None
                    ) -> list[WorkerResult]:
    """doctor.sh's fast checks on every worker (no venv; the port: `port_target`)."""
    return await session.script("doctor", "-", port_target(session.slice, coordinator),
                                PORT_TIMEOUT, capture=True, timeout=60)


def refuse_unhealthy(sl: Slice, results: Sequence[WorkerResult]) -> None:
    """One error naming every worker and blocking check that failed, with the fixes (a
    multislice group's hosts number themselves within their slice)."""
    from tpuctl.cloud.groups import worker_of

    raise_on_failure(list(results), "checking the workers' health")
    bad = [(r.index, c) for r in results
           for c in (registered_as(c, worker_of(sl, r.index)[1])
                     for c in parse_lines(r.stdout))
           if c.bad and c.name in BLOCKING]
    if not bad:
        return
    parts = [f"w{i} {c.name}: {c.detail or c.status}" for i, c in bad]
    # the port tried here is the run's own coordinator port, not doctor's default 8476
    fixes = dict.fromkeys(FIXES["run-port" if c.name == "port" else c.name] for _, c in bad)
    raise RemoteCommandError(
        "not launching: " + "; ".join(parts)[:600],
        hint="; ".join(fixes) + "; `tpuctl doctor NAME` checks everything")
