"""Rendering: rich for people on a terminal, plain text when piped, JSON for programs.

Errors are rendered here and only here (`render_error`), one line plus a hint.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tpuctl.cli.plain import info as info
from tpuctl.cli.plain import out as out
from tpuctl.cli.plain import print_json as print_json
from tpuctl.cli.plain import render_error as render_error
from tpuctl.cli.plain import table_lines
from tpuctl.cli.plain import unreachable as unreachable


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
          ) -> None:
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*headers, title=title, show_edge=False, header_style="bold")
        for row in rows:
            t.add_row(*(str(c) for c in row))
        Console().print(t)
        return
    for line in table_lines(headers, rows):
        out(line)


class Progress:
    """A one-line live status on stderr: a spinner on a terminal (lines printed meanwhile go
    above it), one line per change of state on a pipe. `open` starts it (again, with a new
    label), `close` ends it; `progress()` is the same as a context manager."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.last: str | None = None
        self._spinner: Any = None
        self._live: Any = None

    def open(self, label: str) -> Progress:
        global _live_console
        self.close()
        self.label, self.last = label, None
        if not stderr_is_tty():
            return self
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        console = Console(stderr=True)
        self._spinner = Spinner("dots", text=f"{label} ...", style="status.spinner")
        self._live = Live(self._spinner, console=console, refresh_per_second=12.5,
                          transient=True, redirect_stdout=stdout_is_tty(),
                          redirect_stderr=True)
        self._live.start()
        _live_console = console
        return self

    def close(self) -> None:
        global _live_console
        if self._live is not None:
            self._live.stop()
            self._live = self._spinner = _live_console = None

    def update(self, state: str) -> None:
        if state == self.last:
            return
        self.last = state
        if self._spinner is not None:
            self._spinner.update(text=f"{self.label}: {state}")
        else:
            info(f"{self.label}: {state}")

    def activity(self, what: str) -> None:
        """What is under way, for the spinner only: on a pipe the steps' own lines say it."""
        if self._spinner is not None:
            self.update(what)


# The console showing the live status line (stderr), while there is one: anything printed
# with rich meanwhile must go through it, or it lands on the status line's row.
_live_console: Any = None


def live_console() -> Any:  # a rich Console, or None
    return _live_console


@contextmanager
def progress(label: str) -> Iterator[Progress]:
    """A spinner on stderr while the block runs (a terminal only). Lines written meanwhile
    are printed above it: stderr's, and stdout's when stdout is that terminal too (when it
    is a pipe, its lines stay on stdout untouched)."""
    p = Progress().open(label)
    try:
        yield p
    finally:
        p.close()

