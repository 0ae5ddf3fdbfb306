"""`tpuctl top NAME`: a frame every interval of what each worker is doing (run state and age,
heartbeat, host CPU, memory and load, TPU duty cycle and HBM per chip, the last log line).

One SSH round per frame over connections held for the life of `top` (`--once`: through the
connection daemon when it is on, like `status`). Every worker has a deadline per frame; one
that misses it, or cannot be reached, is marked in that frame and asked again in the next
(its scripts installed again if it never had them), so the others keep coming. A node found
preempted ends `top` (exit 6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.aio import gather_or_cancel
from tpuctl.errors import ExitCode, UsageError
from tpuctl.ops import topframe
from tpuctl.ops.ports import Ports
from tpuctl.ops.session import SliceSession, script_command
from tpuctl.prices import Price

FIRST_WINDOW_MS = 500  # the first round measures CPU over this window itself
FIRST_TIMEOUT = 20.0  # connecting to every worker for the first time
NODE_CHECK_EVERY = 10.0  # seconds between API checks while a worker does not answer


@dataclass(frozen=True)
class TopRequest:
    name: str
    interval: float = 2.0
    once: bool = False
    run_id: str | None = None  # default: each worker's latest run
    expand: bool = False  # a row per worker even on large nodes


@dataclass(frozen=True)
class TopFrame:
    node: str
    node_state: str
    accelerator_type: str
    seq: int
    time: float
    workers: tuple[topframe.WorkerTop, ...]
    groups: tuple[topframe.Group, ...] = ()  # large nodes: rows of GROUP_SIZE workers
    price: Price | None = None

    @property
    def unreachable(self) -> list[int]:
        return [w.index for w in self.workers if w.state == "unreachable"]

    @property
    def run_id(self) -> str:
        ids = {w.run_id for w in self.workers if w.run_id not in ("", "-")}
        return ",".join(sorted(ids)) or "-"

    @property
    def exit_code(self) -> int:
        """0; 255 when a worker could not be read in this frame (as `status` says it)."""
        return int(ExitCode.UNREACHABLE) if self.unreachable else 0

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "node_state": self.node_state,
                "accelerator_type": self.accelerator_type, "frame": self.seq,
                "time": round(self.time, 3), "run_id": self.run_id,
                "exit_code": self.exit_code,
                "price_per_hour": None if self.price is None else self.price.to_dict(),
                "unreachable_workers": self.unreachable,
                "workers": [w.to_dict() for w in self.workers],
                "groups": [g.to_dict() for g in self.groups]}


@dataclass(frozen=True)
class TopResult:
    frames: int
    last: TopFrame | None
    interrupted: bool = False  # Ctrl-C: the way to leave a live `top`

    @property
    def exit_code(self) -> int:
        return 0 if self.interrupted or self.last is None else self.last.exit_code


class Watcher:
    """Takes frames of one session: which workers have the scripts, the last counters."""

    def __init__(self, session: SliceSession, req: TopRequest) -> None:
        self.session, self.req = session, req
        self.installed: set[int] = set()
        self.counters: dict[int, topframe.Counters] = {}
        self.seq = 0
        self.hash = ""
        self.last_check = 0.0
        from tpuctl.prices import price_for

        sl = session.slice
        try:
            self.price: Price | None = price_for(sl.accelerator_type, sl.zone, sl.spot)
        except Exception:  # a price is a nicety: never a reason for top to fail
            self.price = None

    def deadline(self) -> float:
        return FIRST_TIMEOUT if self.seq == 0 else max(5.0, min(self.req.interval, 30.0))

    async def _one(self, i: int, timeout: float) -> topframe.WorkerTop:
        s = self.session
        started = time.monotonic()
        if i not in self.installed:
            self.hash, got = await s.install_on([i], timeout=timeout)
            if not got[0].ok:
                self.counters.pop(i, None)
                return topframe.unreachable(i, got[0].error or f"exit {got[0].exit_code}")
            self.installed.add(i)
        window = 0 if i in self.counters else FIRST_WINDOW_MS
        cmd = script_command(self.hash, "top", [self.req.run_id or "-", str(i), str(window)])
        left = max(1.0, timeout - (time.monotonic() - started))
        r = (await s.run(cmd, indices=[i], timeout=left, capture=True))[0]
        if r.error is not None or r.exit_code != 0:
            self.counters.pop(i, None)
            if r.unreached:
                self.installed.discard(i)  # a worker that comes back may have new disks
            why = r.error or f"top.sh exit {r.exit_code}"
            return topframe.unreachable(i, why)
        row, counters = topframe.parse_worker(i, r.stdout, self.counters.get(i))
        if counters is not None:
            self.counters[i] = counters
        return row

    async def frame(self) -> TopFrame:
        timeout = self.deadline()
        rows = await gather_or_cancel(self._one(i, timeout) for i in self.session.indices)
        if any(w.state == "unreachable" for w in rows):
            await self._check_node()
        sl = self.session.slice
        groups: tuple[topframe.Group, ...] = ()
        if len(rows) > topframe.GROUP_OVER and not self.req.expand:
            groups = tuple(topframe.group(rows))
        frame = TopFrame(sl.name, sl.state, sl.accelerator_type, self.seq, time.time(),
                         tuple(rows), groups, self.price)
        self.seq += 1
        return frame

    async def _check_node(self) -> None:
        """A worker that does not answer may mean a preempted node: PreemptedError then."""
        from tpuctl.ops.access import raise_if_gone

        if time.monotonic() - self.last_check < NODE_CHECK_EVERY:
            return
        self.last_check = time.monotonic()
        name = self.session.slice.name
        await asyncio.to_thread(raise_if_gone, self.session.cloud, name, context="under top",
                                hint=f"`tpuctl down {name} --yes`, then `tpuctl up` again")


def top_node(ports: Ports, req: TopRequest,
             on_frame: Callable[[TopFrame], None] = lambda f: None) -> TopResult:
    """The `top` command: frames until Ctrl-C (exit 0), or one with `once`."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.launch import validate_run_id
    from tpuctl.ops.session import on_slice

    validate_node_name(req.name)
    if req.run_id:
        validate_run_id(req.run_id)
    if not 0.2 <= req.interval <= 3600:
        raise UsageError(f"invalid --interval {req.interval:g}",
                         hint="give seconds between frames, from 0.2 to 3600")
    shown: list[TopFrame] = []  # the frames drawn so far (the last one is kept)

    async def go(session: SliceSession) -> TopResult:
        watcher = Watcher(session, req)
        while True:
            t0 = time.monotonic()
            frame = await watcher.frame()
            shown[:] = [frame]
            on_frame(frame)
            if req.once:
                return TopResult(1, frame)
            await asyncio.sleep(max(0.0, req.interval - (time.monotonic() - t0)))

    try:
        return on_slice(ports, req.name, go, shared=req.once)
    except KeyboardInterrupt:
        last = shown[-1] if shown else None
        return TopResult(0 if last is None else last.seq + 1, last, interrupted=True)
