"""tail, status, stop, runs. `status` shows a table (plain when piped), JSON, or with
`--watch` on a terminal one table redrawn in place (rich Live) instead of a new one every
interval."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tpuctl.cli import output
from tpuctl.cli.plain import STATUS_HEADERS as HEADERS
from tpuctl.cli.plain import line_printer, status_unreachable, stop_lines, unreachable
from tpuctl.cli.plain import status_header_lines as header_lines
from tpuctl.cli.plain import status_rows as rows
from tpuctl.cli.render.base import LiveView, View
from tpuctl.ops.results import RunStatus, StopResult
from tpuctl.ops.runlist import RunList
from tpuctl.ops.runs import TailResult

if TYPE_CHECKING:
    from tpuctl.dryrun.transcript import Transcript

class TailView(View[TailResult]):
    def __init__(self, *, follow: bool) -> None:
        super().__init__()
        self.follow = follow
        self.printer = line_printer(False)

    def line(self, index: int, line: str) -> None:
        self.printer(index, "stdout", line)

    def text(self, result: TailResult) -> None:
        unreachable(result.unreachable)
        if not self.follow:
            return
        if result.exit_code == 0:
            output.info(f"run {result.run_id}: every worker exited 0")
        elif result.first_failed is None:
            output.info(f"run {result.run_id}: every worker that could be read exited 0; "
                        + ", ".join(f"w{i}" for i in sorted(result.unreachable))
                        + " unreachable")
        else:
            codes = ", ".join(f"w{i}={'?' if c is None else c}"
                              for i, c in sorted(result.exit_codes.items()))
            output.info(f"run {result.run_id} failed: first failing worker "
                        f"w{result.first_failed} (exit {result.exit_code}); exit codes {codes}")

    def exit_code(self, result: TailResult) -> int:
        """With --follow, the job's; without, only an unreachable worker makes it non-zero."""
        return result.exit_code if self.follow or result.unreachable else 0


class StatusView(LiveView[RunStatus]):
    """Each refresh as it comes (`show`); `done` leaves the last one on screen and names what
    went wrong."""

    def __init__(self, *, json: bool = False, watch: bool = False,
                 transcript: Transcript | None = None) -> None:
        super().__init__(json=json, live=watch, transcript=transcript)
        self.watch = watch

    def show(self, st: RunStatus) -> None:
        if self.json:
            output.print_json(st.to_dict())
        elif not self.redraw(lambda: _renderable(st)):
            for line in header_lines(st):
                output.out(line)
            output.table(HEADERS, rows(st))

    def done(self, st: RunStatus) -> int:
        """Every refresh was shown already (JSON too): only the verdict is left."""
        self.close()
        if self.watch and st.serve_state in ("degraded", "down"):
            output.info(f"serving {st.serve_state}: worker(s) "
                        + ", ".join(f"w{i}" for i in st.degraded_workers))
        unreachable(status_unreachable(st))
        return st.exit_code


def _renderable(st: RunStatus) -> Any:  # a rich renderable
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(*HEADERS, show_edge=False, header_style="bold")
    for row in rows(st):
        t.add_row(*(str(c) for c in row))
    return Group(*(Text(line) for line in header_lines(st)), t)


class StopView(View[StopResult]):
    def text(self, result: StopResult) -> None:
        for line in stop_lines(result):
            output.info(line)


class RunsView(View[RunList]):
    def text(self, result: RunList) -> None:
        if not result.runs:
            output.info(f"no runs on {result.node}" + (" (among the workers that answered)"
                                                       if result.unreachable else ""))
        else:
            output.table(["RUN", "STATE", "STARTED", "EXIT"],
                         [[r.run_id, r.state, r.started_at or "-",
                           "-" if r.exit_code is None else r.exit_code] for r in result.runs])
        unreachable(result.unreachable)
