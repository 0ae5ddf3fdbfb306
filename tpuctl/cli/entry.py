"""The `tpuctl` program: the fast path first (cli/fast/: a repeated short command answered
through the connection daemon in a few milliseconds), the full CLI (cli/main.py) for
everything else. Nothing here imports typer."""

from __future__ import annotations

import os
import sys

from tpuctl.errors import ExitCode


def main() -> None:
    code = None
    if os.environ.get("TPUCTL_FAST_PATH", "1") != "0":
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
    sys.exit(code)
