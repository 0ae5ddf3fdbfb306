"""`status` and `tail`: what a run is doing on every worker, and its interleaved logs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tpuctl import backoff
from tpuctl.aio import gather_or_cancel
from tpuctl.errors import ExitCode, NotFoundError
from tpuctl.ops.access import raise_if_gone
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.ops.results import RunStatus as RunStatus
from tpuctl.ops.results import WorkerRunStatus as WorkerRunStatus
from tpuctl.ops.results import int_or_none, parse_kv, worker_run_id
from tpuctl.ops.results import parse_status_line as parse_status_line
from tpuctl.ops.session import SliceSession, raise_on_failure

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports

# a worker whose supervisor vanished without an exit code: lost, as OpenSSH says it
DEAD_EXIT = int(ExitCode.UNREACHABLE)
FOLLOW_NO_RUN = 3  # follow.sh's exit status when the worker has no such run


async def run_status(session: SliceSession, run_id: str | None) -> RunStatus:
    calls: dict[int, tuple[Sequence[str], bytes | None]] = {
        i: ([run_id or "-", str(i)], None) for i in session.indices}
    results = await session.script_each("status", calls, capture=True, timeout=60)
    workers = []
    for r in results:
        if r.error is not None or r.exit_code != 0:
            workers.append(WorkerRunStatus(r.index, run_id or "-", "unreachable",
                                           error=r.error or f"status.sh exit {r.exit_code}"))
        else:
            workers.append(parse_status_line(r.index, r.stdout.strip()))
    health = None
    url = workers[0].serve_url if workers else None
    if url is not None and workers[0].state == "running":
        res = await session.script("probe", workers[0].run_id, "0", "-",
                                   f"{url}/health_generate", "10", indices=[0], capture=True,
                                   timeout=70)
        kv = parse_kv(res[0].stdout)
        health = kv.get("http", "000")
    st = RunStatus(node=session.slice.name, node_state=session.slice.state,
                   workers=tuple(workers), health_code=health)
    ended = [w.ended_at for w in workers if w.ended_at is not None]
    if st.finished and ended and not st.unreachable and len(st.run_id.split(",")) == 1:
        from tpuctl.ops.ledgernotes import note_run_end

        note_run_end(session.ports, session.slice, st.run_id, max(ended))
    return st


OnLine = Callable[[int, str], None]


async def _check_node(session: SliceSession) -> None:
    """Raise PreemptedError when the node is gone from under the run (spot preemption)."""
    name = session.slice.name
    await asyncio.to_thread(
        raise_if_gone, session.cloud, name, context="during the run",
        hint=f"`tpuctl down {name} --yes` then `tpuctl up` again; fetch what logs survive "
        "with `tpuctl logs fetch`")


@dataclass
class TailResult:
    exit_codes: dict[int, int | None] = field(default_factory=dict)
    reconnects: int = 0
    run_id: str = "-"
    timed_out: list[int] = field(default_factory=list)
    unreachable: dict[int, str] = field(default_factory=dict)  # worker -> why

    @property
    def finished(self) -> bool:
        return all(c is not None for i, c in self.exit_codes.items()
                   if i not in self.unreachable)

    @property
    def exit_code(self) -> int:
        """The first non-zero exit code in worker order; else 255 when a worker could not
        be read; else 0 (1 when a followed run did not finish: never expected)."""
        code = fanout_exit_code((c for _, c in sorted(self.exit_codes.items())),
                                unreachable=bool(self.unreachable))
        return code if code or self.finished else 1

    @property
    def first_failed(self) -> int | None:
        for i, c in sorted(self.exit_codes.items()):
            if c:
                return i
        return None


async def tail(session: SliceSession, run_id: str | None, *, lines: int | None = 50,
               follow: bool = False, indices: Sequence[int] | None = None,
               on_line: OnLine, max_reconnects: int = 50) -> TailResult:
    """Interleave workers' logs as lines arrive. With follow, survive SSH drops: each worker
    resumes from the byte offset it had received, so no line is lost or repeated."""
    chosen = list(indices) if indices is not None else session.indices
    result = TailResult(exit_codes={i: None for i in chosen})
    await session.install_scripts()

    async def one(i: int) -> None:
        offset = 0
        first = True
        drops = 0
        while True:
            meta: dict[str, str] = {}
            problems: list[str] = []
            received = 0

            def on_output(index: int, stream: str, line: str, meta: dict[str, str] = meta,
                          problems: list[str] = problems) -> None:
                nonlocal received
                if stream == "stdout":
                    received += len(line.encode("utf-8", "surrogateescape")) + 1
                    on_line(index, line)
                elif line.startswith("tpuctl-"):
                    meta.update(parse_kv(line))
                else:
                    problems.append(line)

            args = [run_id or "-", str(i), str(offset), "1" if follow else "0",
                    str(lines) if (first and lines is not None) else ""]
            # not retried by the session: a re-run would repeat lines; the resume is ours
            res = (await session.script("follow", *args, indices=[i], on_output=on_output,
                                        idempotent=False))[0]
            if "tpuctl-offset" in meta:
                offset = int(meta["tpuctl-offset"])
            offset += received
            first = False
            if res.exit_code == FOLLOW_NO_RUN and res.error is None:
                name = session.slice.name
                raise NotFoundError(f"no run {run_id or '(latest)'} on {name} (w{i})",
                                    hint=f"`tpuctl runs {name}` lists the node's runs; "
                                    "`tpuctl launch` starts one")
            if res.error is None and res.exit_code == 0:
                result.run_id = worker_run_id(i, meta.get("tpuctl-run", result.run_id))
                result.exit_codes[i] = int_or_none(meta.get("exit_code"))
                if meta.get("timed_out") == "1":
                    result.timed_out.append(i)
                if not follow or result.exit_codes[i] is not None:
                    return
                if meta.get("alive") == "0":
                    # the supervisor is gone without recording a code (killed -9, reboot)
                    result.exit_codes[i] = DEAD_EXIT
                    return
                continue
            if res.error is None:
                raise_on_failure([res], f"reading w{i}'s log", tails={i: "\n".join(problems)})
            drops += 1
            result.reconnects += 1
            await _check_node(session)  # a lost worker may mean a preempted node
            if i in session.unreachable or not follow or drops > max_reconnects:
                # named, and in the exit code; the other workers' logs go on
                result.unreachable[i] = res.error or "unreachable"
                return
            await asyncio.sleep(backoff.delay(drops, first=0.2, cap=3.0))

    await gather_or_cancel(one(i) for i in chosen)
    if follow and result.finished:
        from tpuctl.ops.ledgernotes import note_run_end

        note_run_end(session.ports, session.slice, result.run_id)
    if follow and result.timed_out:
        from tpuctl.errors import TimeoutExpired

        raise TimeoutExpired(
            f"run {result.run_id} exceeded its --timeout and was stopped on "
            + ", ".join(f"w{i}" for i in sorted(result.timed_out)),
            hint="its last lines are above; raise the timeout (launch --timeout, or "
            "timeouts.run in the recipe)")
    return result


@dataclass(frozen=True)
class TailRequest:
    name: str
    run_id: str | None = None  # default: the latest
    lines: int = 50  # last N lines per worker
    follow: bool = False  # until every worker exits; survives SSH drops
    workers: str = "all"


def tail_node(ports: Ports, req: TailRequest, on_line: OnLine) -> TailResult:
    """The `tail` command."""
    from tpuctl.ops.session import on_slice
    from tpuctl.workers.select import parse_worker_selection

    parse_worker_selection(req.workers, None)

    async def go(session: SliceSession) -> TailResult:
        sl = session.slice
        idx = parse_worker_selection(req.workers, len(sl.workers), sl.slices)
        return await tail(session, req.run_id, lines=req.lines, follow=req.follow,
                          indices=idx, on_line=on_line)

    # without --follow a short command: through the connection daemon, as exec and status
    return on_slice(ports, req.name, go, shared=not req.follow)


@dataclass(frozen=True)
class StatusRequest:
    name: str
    run_id: str | None = None
    watch: bool = False  # until the run ends (or a server degrades)
    interval: float = 2.0  # seconds between refreshes


def status_node(ports: Ports, req: StatusRequest,
                on_refresh: Callable[[RunStatus], None] = lambda st: None) -> RunStatus:
    """The `status` command; with `watch`, every refresh goes to `on_refresh` too. A
    PREEMPTED or TERMINATED node ends in opening the session: exit 6, named."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.session import on_slice

    validate_node_name(req.name)

    async def go(session: SliceSession) -> RunStatus:
        while True:
            st = await run_status(session, req.run_id)
            on_refresh(st)
            if not req.watch or st.finished or st.serve_state in ("degraded", "down"):
                return st
            await asyncio.sleep(req.interval)

    return on_slice(ports, req.name, go, shared=True)
