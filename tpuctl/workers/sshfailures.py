"""How an SSH failure is classified (retried or not, the command started or not) and told to
the user in one line, as one worker's result."""

from __future__ import annotations

import asyncio

from tpuctl.workers.base import SshTarget, WorkerResult
from tpuctl.workers.sshlib import asyncssh


class PermanentSshError(Exception):
    """A failure retrying cannot fix (auth, host key, refused request); message is user-facing."""


class MaybeStartedError(PermanentSshError):
    """The connection broke after the exec request may have reached the server."""


class NotStartedError(Exception):
    """Wraps any failure before the command started (connect, auth, channel refused)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def is_transport_failure(exc: BaseException) -> bool:
    """Retry only what a flaky network explains; never anything about identity or auth."""
    if isinstance(exc, PermanentSshError):
        return False
    if isinstance(exc, asyncssh.ChannelOpenError):
        # The channel never opened, so the command cannot have started.
        return exc.code == asyncssh.OPEN_CONNECT_FAILED
    return isinstance(exc, (OSError, asyncio.TimeoutError, TimeoutError, asyncssh.ConnectionLost))


def one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def failure_result(target: SshTarget, exc: BaseException, *, unreached: bool) -> WorkerResult:
    """One worker's transport failure as its result, in one line."""
    index = target.index
    if isinstance(exc, PermanentSshError):
        return WorkerResult(index, None, error=str(exc), unreached=unreached)
    where = f"{target.host}:{target.port}"
    what = "connect timed out" if isinstance(exc, TimeoutError | asyncio.TimeoutError) \
        else one_line(exc)
    return WorkerResult(index, None, error=f"worker {index} ({where}): {what}",
                        unreached=unreached)
