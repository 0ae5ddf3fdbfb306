"""sync, secrets push|list, bootstrap, launch, logs fetch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.cli.render.workers import unreachable
from tpuctl.ops.bootstrap import BootstrapResult, WorkerBootstrap
from tpuctl.ops.launch import LaunchResult
from tpuctl.ops.logs import FetchResult
from tpuctl.ops.secrets import SecretsListing, SecretsResult
from tpuctl.ops.sync import SyncResult

if TYPE_CHECKING:
    from tpuctl.dryrun.transcript import Transcript


class SyncView(View[SyncResult]):
    def text(self, result: SyncResult) -> None:
        if result.left_out:
            output.info(f"left out (uncommitted): {', '.join(result.left_out[:10])}")
        if result.untracked:
            output.info(f"not synced (untracked): {', '.join(result.untracked[:10])}")
        what = ("already at" if result.noop
                else f"synced {len(result.changed)} worker(s) to")
        output.info(f"{what} {result.repo}@{result.sha[:12]} via {result.via}")
        output.out(result.sha)


class SecretsPushView(View[SecretsResult]):
    def text(self, result: SecretsResult) -> None:
        output.info(f"pushed {len(result.keys)} key(s) to {result.workers} worker(s): "
                    f"{', '.join(result.keys)}")
        unreachable(result.unreachable)


class SecretsListView(View[SecretsListing]):
    def text(self, listing: SecretsListing) -> None:
        for i, k in sorted(listing.keys.items()):
            output.out(f"w{i}: {' '.join(k) if k else '(none)'}")
        unreachable(listing.unreachable)


class BootstrapProgress:
    """Per-worker progress: one line per change of a worker's state or last log line."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.seen: dict[int, tuple[str, str]] = {}

    def update(self, w: WorkerBootstrap) -> None:
        key = (w.state, w.last_line)
        if self.quiet or self.seen.get(w.index) == key:
            return
        self.seen[w.index] = key
        extra = f" (attempt {w.attempts})" if w.attempts > 1 else ""
        line = f" {w.last_line}" if w.last_line else ""
        output.info(f"[w{w.index}] bootstrap {w.state}{extra}{line}"[:200])


class BootstrapView(View[BootstrapResult]):
    def __init__(self, *, json: bool = False, transcript: Transcript | None = None) -> None:
        super().__init__(json=json, transcript=transcript)
        self.workers = BootstrapProgress(quiet=json)

    def text(self, result: BootstrapResult) -> None:
        output.info(f"bootstrap {result.hash}: " + ("cached on every worker, nothing to do"
                                                    if result.cached else
                                                    f"done in {result.seconds:.1f}s"))


class LaunchView(View[LaunchResult]):
    def text(self, result: LaunchResult) -> None:
        output.info(f"launched on {result.workers} worker(s); follow with "
                    f"`tpuctl tail {result.node} {result.run_id} --follow`")
        output.out(result.run_id)


class FetchView(View[FetchResult]):
    def text(self, result: FetchResult) -> None:
        output.info(f"{len(result.files)} log(s) in {result.directory}"
                    + (f"; not copied: {', '.join(f'w{i}' for i in result.missing)}"
                       if result.missing else ""))
        output.out(str(result.directory))
