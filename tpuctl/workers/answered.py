"""A `Workers` whose first calls were already made: the fast path (tpuctl/cli/fast/) sent a
command's first request to the connection daemon itself and got an answer only the full CLI
can finish (a worker lost from a cached list, scripts to install, an error to raise). The
full CLI then runs the whole command as usual, and its first calls are answered from what
the daemon said, instead of running anything twice (cli/fast/handoff.py)."""

from __future__ import annotations

from tpuctl.record import record
from tpuctl.workers import muxproto

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from tpuctl.workers.base import Listener, OnOutput, SshTarget, WorkerResult, Workers


@record
class Answer:
    """One request the fast path made (as `Workers.run` would be called) and the daemon's
    reply: results, or an error (`muxproto.error_to_dict`)."""

    command: Any  # str, or {worker: command}
    indices: tuple[int, ...] | None
    timeout: float | None
    capture: bool
    results: tuple[WorkerResult, ...] = ()
    error: dict[str, Any] | None = None


class AnsweredWorkers:
    def __init__(self, pool: Workers, answers: Sequence[Answer]) -> None:
        self._pool = pool
        self._answers = list(answers)

    async def run(self, command: str | Mapping[int, str], *,
                  indices: Sequence[int] | None = None, timeout: float | None = None,
                  stdin: bytes | None = None, on_output: OnOutput | None = None,
                  capture: bool = False) -> list[WorkerResult]:
        if not self._answers:
            return await self._pool.run(command, indices=indices,  # type: ignore[arg-type]
                                        timeout=timeout, stdin=stdin, on_output=on_output,
                                        capture=capture)
        a = self._answers.pop(0)
        asked = (command, None if indices is None else tuple(indices), timeout, capture)
        if stdin is not None or asked != (a.command, a.indices, a.timeout, a.capture):
            raise AssertionError("the fast path's request is not the full CLI's first call: "
                                 f"{asked!r} != {(a.command, a.indices, a.timeout)!r}")
        if a.error is not None:
            raise muxproto.error_from_dict(a.error)
        return list(a.results)  # their lines were printed as they came

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        return await self._pool.forward_local(index, local_port, dest_host, dest_port)

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        self._pool.retarget(targets, connect_timeout=connect_timeout,
                            connect_attempts=connect_attempts)

    async def close(self) -> None:
        await self._pool.close()
