"""Lines from workers as they arrive (`[wN] line`), `exec`'s summary, unreachable workers.
The text itself is in cli/plain.py, shared with the fast path."""

from __future__ import annotations

from tpuctl.cli import output
from tpuctl.cli.plain import exec_summary
from tpuctl.cli.plain import line_printer as line_printer
from tpuctl.cli.plain import text_block as text_block
from tpuctl.cli.plain import unreachable as unreachable
from tpuctl.cli.render.base import View
from tpuctl.ops.results import ExecResult


def argv_line(argv: list[str]) -> None:
    """`ssh --print`: the argv as one shell line."""
    import shlex

    output.out(shlex.join(argv))


class ExecView(View[ExecResult]):
    def text(self, result: ExecResult) -> None:
        output.info(exec_summary(result.results))
