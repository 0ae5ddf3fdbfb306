"""The command-line interface.

Help is drawn with rich on a terminal and plain when piped (the project's output rule): typer
reads TYPER_USE_RICH when it is imported, so it is decided here, before any command module
imports typer. Plain help skips importing rich (~100 ms) for scripts and completion.
"""

import os
import sys

if not sys.stdout.isatty():
    os.environ.setdefault("TYPER_USE_RICH", "0")
