"""`runs NAME`: the node's runs, newest first, each with its state across the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.ops.runs import RunStatus, WorkerRunStatus, parse_status_line
from tpuctl.ops.session import SliceSession, is_unreachable, parse_kv, raise_on_failure

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    state: str  # as `status` says it: running, succeeded, failed, stopped, timed-out, ...
    started_at: str | None  # UTC, ISO 8601, the earliest worker's
    exit_code: int | None  # the run's code once it has finished

    def to_dict(self) -> dict[str, object]:
        return {"run_id": self.run_id, "state": self.state, "started_at": self.started_at,
                "exit_code": self.exit_code}


@dataclass(frozen=True)
class RunList:
    node: str
    runs: tuple[RunSummary, ...]  # newest first
    unreachable: dict[int, str] = field(default_factory=dict)  # worker -> why

    @property
    def exit_code(self) -> int:
        """0, or 255 when a worker could not be reached (its runs may be missing here)."""
        return fanout_exit_code([], unreachable=bool(self.unreachable))

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "exit_code": self.exit_code,
                "runs": [r.to_dict() for r in self.runs],
                "unreachable_workers": sorted(self.unreachable)}


async def list_runs(session: SliceSession) -> RunList:
    results = await session.script("runs", capture=True, timeout=60)
    raise_on_failure([r for r in results if not is_unreachable(r)], "listing runs")
    gone = {r.index: r.error or "unreachable" for r in results if is_unreachable(r)}
    seen: dict[str, dict[int, WorkerRunStatus]] = {}
    latest: set[str] = set()
    for r in results:
        if r.index in gone:
            continue
        for line in r.stdout.splitlines():
            w = parse_status_line(r.index, line)
            seen.setdefault(w.run_id, {})[r.index] = w
            if parse_kv(line).get("latest") == "1":
                latest.add(w.run_id)
    runs = []
    for rid, by_worker in seen.items():
        workers = tuple(by_worker.get(i) or WorkerRunStatus(
            i, rid, "unreachable" if i in gone else "missing") for i in session.indices)
        st = RunStatus(node=session.slice.name, node_state=session.slice.state, workers=workers)
        started = sorted(w.started_at for w in workers if w.started_at)
        runs.append(RunSummary(rid, st.state, started[0] if started else None,
                               st.run_exit_code if st.finished else None))
    # newest first; within one second the node's latest run comes first
    runs.sort(key=lambda r: (r.started_at or "", r.run_id in latest, r.run_id), reverse=True)
    return RunList(session.slice.name, tuple(runs), gone)


def list_node_runs(ports: Ports, name: str) -> RunList:
    """The `runs` command."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.session import on_slice

    validate_node_name(name)
    return on_slice(ports, name, list_runs, shared=True)
