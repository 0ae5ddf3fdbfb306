"""Lines from workers as they arrive (`[wN] line`), `exec`'s summary, unreachable workers."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.cloud.groups import label
from tpuctl.ops.remote_exec import ExecResult

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def line_printer(json_mode: bool) -> Callable[[int, str, str], None]:
    """Print each worker's lines as they arrive, prefixed `[wN]` (coloured on a terminal);
    with --json they go to stderr, so stdout holds the document only."""
    colour = output.stdout_is_tty() and not json_mode
    if colour:
        from rich.console import Console
        from rich.markup import escape

        out_console = Console(highlight=False, soft_wrap=True)
        err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_output(index: int, stream: str, line: str) -> None:
        if colour:
            c = _COLOURS[index % len(_COLOURS)]
            # under a live status line (`up`), above it: that console owns the terminal
            console = output.live_console() or (err_console if stream == "stderr"
                                                else out_console)
            console.print(f"[{c}]\\[{label(index)}][/{c}] {escape(line)}", highlight=False,
                          soft_wrap=True)
            return
        target = sys.stderr if (stream == "stderr" or json_mode) else sys.stdout
        target.write(f"[{label(index)}] {line}\n")
        target.flush()

    return on_output


def argv_line(argv: list[str]) -> None:
    """`ssh --print`: the argv as one shell line."""
    import shlex

    output.out(shlex.join(argv))


def text_block(text: str) -> None:
    """Text that is the data (`ssh-config`), as is."""
    sys.stdout.write(text)
    sys.stdout.flush()


def unreachable(workers: dict[int, str]) -> None:
    """One stderr line per worker that could not be reached (the others' results stand)."""
    for i, why in sorted(workers.items()):
        output.info(f"{label(i)} unreachable: {why}")


class ExecView(View[ExecResult]):
    def text(self, result: ExecResult) -> None:
        parts = []
        for r in result.results:
            if r.ok:
                parts.append(f"{label(r.index)} ok")
            elif r.error:
                parts.append(f"{label(r.index)} {r.error}")
            else:
                parts.append(f"{label(r.index)} exit {r.exit_code}")
        failed = [r for r in result.results if not r.ok]
        head = f"{len(result.results) - len(failed)}/{len(result.results)} workers ok"
        output.info(f"{head}: " + ", ".join(parts))
