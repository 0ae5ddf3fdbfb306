"""Rendering: rich for people on a terminal, plain text when piped, JSON for programs.

Errors are rendered here and only here (`render_error`), one line plus a hint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tpuctl.errors import TpuctlError


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """Progress and summaries go to stderr, so stdout stays clean for data and pipes."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def unreachable(workers: dict[int, str]) -> None:
    """One stderr line per worker that could not be reached (the others' results stand)."""
    for i, why in sorted(workers.items()):
        info(f"w{i} unreachable: {why}")


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
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


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


def render_error(err: TpuctlError, *, as_json: bool = False) -> None:
    if as_json:
        print_json(err.to_dict())
    line = f"error: {err.message}"
    if err.hint:
        line += f"\n  hint: {err.hint}"
    info(line)
