"""Wait for a node's startup script: GCP's guest agent runs the `startup-script` metadata on
every worker at boot, after the node is READY, so a job launched too early would race it.
`bootstrap` and `launch` (and `up`) wait, bounded, on every worker, and fail clearly when it
exited non-zero. Worker side: remote/startup.sh reads the journal as on GCP."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.errors import RemoteCommandError, TimeoutExpired
from tpuctl.ops.session import SliceSession, raise_on_failure

DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class StartupResult:
    ran: bool  # the node has a startup script and it finished on every worker
    workers: int
    seconds: float


def parse(stdout: str) -> tuple[str, int | None, list[str]]:
    """(state, exit status, the script's last lines) from startup.sh's answer."""
    lines = stdout.strip().splitlines()
    head = dict(p.split("=", 1) for p in (lines[0].split() if lines else []) if "=" in p)
    status = head.get("status")
    return (head.get("startup", "unknown"), int(status) if status and status.isdigit()
            else None, [ln.removeprefix("startup-script: ") for ln in lines[1:]])


async def wait_startup(session: SliceSession, *, timeout: float = DEFAULT_TIMEOUT,
                       on_state: Callable[[str], None] | None = None) -> StartupResult:
    """Until the startup script finished on every worker; nothing to do (no remote call) when
    the node has none. TimeoutExpired (5) past `timeout`; RemoteCommandError (1) naming the
    workers where it exited non-zero, with its last lines."""
    t0 = time.monotonic()
    if not session.slice.runs_startup_script or session.startup_done:
        return StartupResult(False, len(session.indices), 0.0)
    if on_state:
        on_state("waiting for the startup script")
    results = await session.script("startup", str(max(1, int(timeout))), "1", capture=True,
                                   timeout=timeout + 60)
    raise_on_failure(results, "checking the startup script")
    failed, running = [], []
    for r in results:
        state, status, tail = parse(r.stdout)
        if state == "running":
            running.append(f"w{r.index}")
        elif state == "done" and status:
            shown = f": {' | '.join(tail[-3:])}" if tail else ""
            failed.append(f"w{r.index} exit status {status}{shown}")
    if failed:
        raise RemoteCommandError(
            f"the node's startup script failed on {len(failed)}/{len(results)} worker(s): "
            + "; ".join(failed),
            hint="fix the startup-script metadata and recreate the node; its output: "
            "`tpuctl exec NAME -- journalctl -b -u google-startup-scripts.service -o cat`")
    if running:
        raise TimeoutExpired(
            f"the node's startup script was still running after {timeout:.0f}s on "
            f"{', '.join(running)}",
            hint="wait and re-run, or raise the timeout; its output: `tpuctl exec NAME -- "
            "journalctl -b -u google-startup-scripts.service -o cat`")
    session.startup_done = True  # a later step in this session asks no worker again
    return StartupResult(True, len(results), time.monotonic() - t0)
