"""The `tpuctl` program: the fast path first (cli/fast/: a repeated short command answered
through the connection daemon in a few milliseconds), the full CLI (cli/main.py) for
everything else. Nothing here imports typer."""

from __future__ import annotations

import os
import sys

from tpuctl.errors import ExitCode

# the commands the fast path serves (cli/fast/args.py:OPTIONS); anything else, and any help,
# goes straight to the full CLI without importing the fast path (`--help` stays ~1 ms sooner)
_FAST = ("exec", "status", "tail", "stop", "ssh-config")


def _maybe_fast(argv: list[str]) -> bool:
    if not argv or argv[0] not in _FAST or os.environ.get("TPUCTL_FAST_PATH", "1") == "0":
        return False
    own = argv[:argv.index("--")] if "--" in argv else argv
    return "--help" not in own and "-h" not in own


def main() -> None:
    code = None
    if _maybe_fast(sys.argv[1:]):
        from tpuctl.cli import fast

        try:
            code = fast.run(sys.argv[1:])
        except KeyboardInterrupt:
            from tpuctl.cli import plain

            plain.info("interrupted")  # as cli/main.py:run says it
            code = int(ExitCode.INTERRUPTED)
    if code is None:
        from tpuctl.cli.main import main as full

        full()
    else:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """A command the fast path did by itself leaves without the interpreter's teardown
    (~1.3 ms of freeing modules and objects nothing needs), its output flushed first. Not
    after the full CLI ran in process (handoff), nor with a thread or an atexit handler, nor
    when a flush fails: then `sys.exit` does what it always does."""
    import atexit

    if "tpuctl.cli.main" in sys.modules or "threading" in sys.modules or \
            getattr(atexit, "_ncallbacks", lambda: 1)():
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # e.g. a closed pipe: the usual exit reports it
        return
    os._exit(code)
