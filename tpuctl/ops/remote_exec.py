"""`exec`: one command on chosen workers in parallel, output attributed to each worker."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.errors import UsageError
from tpuctl.naming import validate_node_name
from tpuctl.ops.ports import Ports
from tpuctl.ops.results import ExecResult as ExecResult
from tpuctl.ops.session import open_session
from tpuctl.workers.base import OnOutput
from tpuctl.workers.select import parse_worker_selection


def build_command(argv: Sequence[str]) -> str:
    """Quote once, by code: the remote shell sees exactly these arguments."""
    if not argv:
        raise UsageError("no command given", hint="put the command after --, e.g. -- hostname")
    return shlex.join(argv)


@dataclass(frozen=True)
class ExecRequest:
    name: str
    argv: tuple[str, ...]
    workers: str = "all"  # all, an index, e.g. 0,2-3, or s1w0-3 in a multislice group
    timeout: float | None = None  # seconds per worker


def check(req: ExecRequest) -> str:
    """Everything checkable locally (bad input costs no API call); the remote command."""
    command = build_command(req.argv)
    validate_node_name(req.name)
    parse_worker_selection(req.workers, None)
    if req.timeout is not None and req.timeout <= 0:
        raise UsageError(f"invalid --timeout {req.timeout}",
                         hint="give a positive number of seconds")
    return command


async def run_exec(ports: Ports, req: ExecRequest, on_output: OnOutput | None = None
                   ) -> ExecResult:
    command = check(req)
    session = open_session(ports, req.name, shared=True)
    try:
        sl = session.slice
        indices = parse_worker_selection(req.workers, len(sl.workers), sl.slices)
        results = await session.run(command, indices=indices, timeout=req.timeout,
                                    on_output=on_output)
    finally:
        await session.close()
    return ExecResult(node=req.name, results=tuple(results))


def exec_command(ports: Ports, req: ExecRequest, on_output: OnOutput | None = None
                 ) -> ExecResult:
    """The `exec` command: one command on the chosen workers, one result each."""
    check(req)
    return asyncio.run(run_exec(ports, req, on_output))
