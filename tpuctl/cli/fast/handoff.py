"""When the fast path has started a command the full CLI must finish: run the full CLI on
the same command line, its first worker calls answered with what the daemon already said
(wiring.answered, workers/answered.py), so nothing runs twice and every line the full CLI
prints after them is its own."""

from __future__ import annotations

from tpuctl.workers.answered import Answer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tpuctl.cli.fast.daemon import Reply

__all__ = ["Answer", "answer", "resume"]


def answer(command: str | Mapping[int, str], indices: Sequence[int] | None,
           timeout: float | None, capture: bool, reply: Reply) -> Answer:
    return Answer(command=command, indices=None if indices is None else tuple(indices),
                  timeout=timeout, capture=capture, results=reply.results, error=reply.error)


def resume(argv: Sequence[str], answers: Sequence[Answer], *,
           bypass_daemon: bool = False) -> int:
    """`bypass_daemon`: the daemon did not acknowledge (it was said already): in process."""
    from tpuctl import wiring
    from tpuctl.cli.main import run

    with wiring.answered(answers, bypass_daemon=bypass_daemon):
        return run(list(argv))
