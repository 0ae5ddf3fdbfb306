"""What every command's view shares: JSON or text, the dry-run transcript, the exit code."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tpuctl.cli import output

if TYPE_CHECKING:
    from tpuctl.dryrun.transcript import Transcript

R = TypeVar("R")
V = TypeVar("V", bound="View[Any]")


class View(Generic[R]):
    """Draws one command's result: `done(result)` prints it and returns the exit code.

    A view is also a context manager, so a live status line it opened closes however the
    operation ends."""

    def __init__(self, *, json: bool = False, transcript: Transcript | None = None) -> None:
        self.json = json
        self.transcript = transcript
        self.progress = output.Progress()

    @property
    def dry_run(self) -> bool:
        return self.transcript is not None

    def __enter__(self: V) -> V:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.close()

    def done(self, result: R) -> int:
        self.progress.close()
        if self.transcript is not None:
            from tpuctl.cli.render.dryrun import transcript

            transcript(self.transcript, json=self.json, document=self.dry_run_document(result))
            return 0
        if self.json:
            output.print_json(self.document(result))
        else:
            self.text(result)
        return self.exit_code(result)

    def document(self, result: R) -> Any:  # what json.dumps takes
        return result.to_dict()  # type: ignore[attr-defined]

    def dry_run_document(self, result: R) -> dict[str, Any] | None:
        """A command's own JSON shape for --dry-run --json, if it has one (gc)."""
        return None

    def text(self, result: R) -> None:
        raise NotImplementedError

    def exit_code(self, result: R) -> int:
        """The result's exit code (results that ran on workers carry one), else 0."""
        return int(getattr(result, "exit_code", 0) or 0)


class LiveView(View[R]):
    """A view that redraws in place (rich's Live) when asked to and stdout is a terminal;
    `close` leaves the last drawing on screen, however the operation ends."""

    def __init__(self, *, json: bool = False, live: bool = False,
                 transcript: Transcript | None = None) -> None:
        super().__init__(json=json, transcript=transcript)
        self._live: Any = None
        if live and not json and output.stdout_is_tty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(), auto_refresh=False)
            self._live.start()

    def redraw(self, renderable: Callable[[], Any]) -> bool:
        """Draw in place if live; False: the caller prints instead (and rich's renderable is
        never built)."""
        if self._live is None:
            return False
        self._live.update(renderable(), refresh=True)
        return True

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        super().__exit__(kind, exc, tb)
