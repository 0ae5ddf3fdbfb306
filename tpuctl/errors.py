"""Typed errors and the stable exit codes they map to.

Every user-facing failure is a `TpuctlError` carrying an exit code and a hint (the next
action to take). They are rendered in exactly one place (`tpuctl.cli.main`); nothing in
the core calls `sys.exit`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final


class ExitCode:
    """Documented in docs/commands.md#exit-codes; stable across releases. Plain ints, not an
    IntEnum: `enum` costs every fast-path command ~1 ms to import (docs/performance.md)."""

    OK: Final = 0
    FAILED: Final = 1  # the job or remote command failed
    USAGE: Final = 2  # usage or bad input
    NOT_FOUND: Final = 3
    CLOUD: Final = 4  # cloud API or capacity error
    TIMEOUT: Final = 5
    PREEMPTED: Final = 6
    INTERRUPTED: Final = 130
    UNREACHABLE: Final = 255  # a worker could not be reached (as OpenSSH exits); others reported


class TpuctlError(Exception):
    """Base of every error a user may see; `message` names the bad value, `hint` the fix."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class UsageError(TpuctlError):
    """Bad input that the user can fix by changing the command line or a file."""

    exit_code = ExitCode.USAGE


class NotFoundError(TpuctlError):
    exit_code = ExitCode.NOT_FOUND


class CloudError(TpuctlError):
    """The cloud API refused or failed (quota, capacity, permission, server error)."""

    exit_code = ExitCode.CLOUD


class CapacityError(CloudError):
    """No capacity (stockout) or no quota for the request in this zone: another zone may."""


class NodeNotReady(CloudError):
    """The node exists but cannot be worked on (CREATING, STOPPED, no workers...)."""


class ConfigError(UsageError):
    """Missing or inconsistent configuration (project, zone, endpoint, credentials)."""


class TimeoutExpired(TpuctlError):
    exit_code = ExitCode.TIMEOUT


class PreemptedError(TpuctlError):
    exit_code = ExitCode.PREEMPTED


class RemoteCommandError(TpuctlError):
    """A command ran on workers and at least one of them exited non-zero or was unreachable."""

    exit_code = ExitCode.FAILED

    def __init__(
        self, message: str, hint: str | None = None, *, returncode: int = 1
    ) -> None:
        super().__init__(message, hint)
        self.returncode = returncode


class UnreachableError(TpuctlError):
    """No worker that the command needed could be reached (exit 255, as OpenSSH)."""

    exit_code = ExitCode.UNREACHABLE


class Declined(TpuctlError):
    """The user answered no to a confirmation: nothing was changed."""

    exit_code = ExitCode.FAILED
