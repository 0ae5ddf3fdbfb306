"""One rule for the exit code of a command that ran on several workers.

`exec`, `status`, `stop`, `tail`, `logs fetch` and `secrets` report every worker's result
and exit with one code: the first non-zero exit code of a command that ran, in worker
order; else 5 when a worker timed out; else 255 when a worker could not be reached (what
OpenSSH returns when it could not run the command at all); else 0.
"""

from __future__ import annotations

from tpuctl.errors import ExitCode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

UNREACHABLE_EXIT = int(ExitCode.UNREACHABLE)


def fanout_exit_code(codes: Iterable[int | None], *, timed_out: bool = False,
                     unreachable: bool = False) -> int:
    """`codes`: the exit codes of the commands that ran, in worker order (None: not run or
    not finished, which does not count)."""
    for code in codes:
        if code:
            return code
    if timed_out:
        return int(ExitCode.TIMEOUT)
    if unreachable:
        return UNREACHABLE_EXIT
    return 0
