"""`exec`: one command on chosen workers in parallel, output attributed to each worker."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.errors import UsageError
from tpuctl.naming import validate_node_name
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.workers.base import OnOutput, WorkerResult
from tpuctl.workers.select import parse_worker_selection


@dataclass(frozen=True)
class ExecResult:
    node: str
    results: tuple[WorkerResult, ...]

    @property
    def exit_code(self) -> int:
        """The first non-zero worker exit code in worker order; 5 timeout; 255 unreachable."""
        return fanout_exit_code((r.exit_code for r in self.results),
                                timed_out=any(r.timed_out for r in self.results),
                                unreachable=any(r.exit_code is None for r in self.results))

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "exit_code": self.exit_code,
            "workers": [
                {"worker": r.index, "exit_code": r.exit_code, "error": r.error,
                 "timed_out": r.timed_out, "seconds": round(r.duration, 3)}
                for r in self.results
            ],
        }


def build_command(argv: Sequence[str]) -> str:
    """Quote once, by code: the remote shell sees exactly these arguments."""
    if not argv:
        raise UsageError("no command given", hint="put the command after --, e.g. -- hostname")
    return shlex.join(argv)


async def run_exec(cloud: Cloud, name: str, argv: Sequence[str], *, workers: str = "all",
                   timeout: float | None = None, on_output: OnOutput | None = None) -> ExecResult:
    command = build_command(argv)
    validate_node_name(name)
    parse_worker_selection(workers, None)  # syntax first: bad input costs no API call
    if timeout is not None and timeout <= 0:
        raise UsageError(f"invalid --timeout {timeout}", hint="give a positive number of seconds")
    from tpuctl.ops.session import open_session

    session = open_session(cloud, name, shared=True)
    try:
        indices = parse_worker_selection(workers, len(session.slice.workers))
        results = await session.run(command, indices=indices, timeout=timeout,
                                    on_output=on_output)
    finally:
        await session.close()
    return ExecResult(node=name, results=tuple(results))
