"""up, serve, down."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.cli.render.loop import BootstrapProgress
from tpuctl.cli.render.nodes import ask
from tpuctl.cli.render.workers import line_printer
from tpuctl.model import Slice
from tpuctl.ops.bootstrap import WorkerBootstrap
from tpuctl.ops.down import DownEvents, DownResult
from tpuctl.ops.up import Step, UpEvents, UpResult

if TYPE_CHECKING:
    from tpuctl.dryrun.transcript import Transcript


def step_line(s: Step) -> str:
    """`✓ step outcome detail (seconds)` (`✗` for a run that failed)."""
    mark = "✗" if s.outcome == "failed" else "✓"
    return f"{mark} {s.name:<9} {s.outcome:<7} {s.detail} ({s.seconds:.1f}s)"


class UpView(View[UpResult], UpEvents):
    """Each step as one line, the job's lines as they arrive, a spinner naming what is under
    way (a terminal only), then the verdict."""

    def __init__(self, *, json: bool = False, serve: bool = False,
                 transcript: Transcript | None = None) -> None:
        super().__init__(json=json, transcript=transcript)
        self.serve = serve
        self.printer = line_printer(json)
        self.workers = BootstrapProgress(quiet=json or serve)

    def begin(self, node: str) -> None:
        self.progress.open(node)

    def step(self, s: Step) -> None:
        if not self.json:
            output.info(step_line(s))

    def line(self, index: int, line: str) -> None:
        if not self.serve:
            self.printer(index, "stdout", line)

    def state(self, state: str) -> None:
        self.progress.update(state)

    def bootstrap(self, w: WorkerBootstrap) -> None:
        self.workers.update(w)

    def activity(self, what: str) -> None:
        self.progress.activity(what)

    def text(self, result: UpResult) -> None:
        if result.url is not None:
            node = result.node
            tip = (f"`tpuctl generate {node} 'Hello'`" if self.serve else
                   f"try `tpuctl generate {node} 'Hello'` or `tpuctl forward {node}`")
            output.info(f"serving at {result.url} (on the slice); {tip}")
            output.out(result.run_id)
        elif result.exit_code is not None:
            total = sum(s.seconds for s in result.steps)
            verdict = ("succeeded" if result.exit_code == 0
                       else f"failed (exit {result.exit_code})")
            output.info(f"run {result.run_id} {verdict}; total {total:.1f}s")
            if result.left_up is not None:
                cost = (f"at {result.left_up.text()}" if result.left_up.amount is not None
                        else "(price unknown)")
                output.info(f"{result.node} is still up {cost}: "
                            f"`tpuctl down {result.node} --yes` when you are done")
        else:
            output.out(result.run_id)


class DownView(View[DownResult], DownEvents):
    def __init__(self, name: str, *, json: bool = False) -> None:
        super().__init__(json=json)
        self.name = name

    def confirm(self, sl: Slice) -> bool:
        return ask(f"Stop the latest run on {sl.name} and delete it ({sl.accelerator_type}, "
                   f"{len(sl.workers)} workers, {sl.state}, in {sl.zone})?")

    def polling(self) -> None:
        if self.progress.last is None:
            self.progress.open(f"deleting {self.name}")
        self.progress.update("DELETING")

    def text(self, result: DownResult) -> None:
        if result.stop_skipped:
            output.info(f"stop skipped: {result.stop_skipped}")
        output.info(f"deleted {result.deleted.name} in {result.deleted.seconds:.1f}s")

    def done(self, result: DownResult) -> int:
        if self.json and result.stop_skipped:
            output.info(f"stop skipped: {result.stop_skipped}")
        return super().done(result)
