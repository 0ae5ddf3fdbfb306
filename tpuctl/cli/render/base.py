"""What every command's view shares: JSON or text, the dry-run transcript, the exit code."""

from __future__ import annotations

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
