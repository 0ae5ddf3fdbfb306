"""cli/entry.py:_exit_now: a command the fast path did alone skips the interpreter's
teardown, with every byte of its output written and its exit code kept; anything that may
need the teardown (threads, atexit handlers, the full CLI) exits as usual."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPUCTL_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          env=env, check=False)


def test_the_output_is_flushed_and_the_code_kept() -> None:
    p = _run("import sys, atexit\n"
             "from tpuctl.cli import entry\n"
             "sys.stdout.write('out without newline'); sys.stderr.write('err')\n"
             "entry._exit_now(3)\n"
             "print('not reached')")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out without newline", "err")


def test_an_atexit_handler_or_a_thread_gets_the_usual_exit() -> None:
    for setup in ("import atexit; atexit.register(lambda: print('atexit ran'))",
                  "import threading"):
        p = _run(f"{setup}\nfrom tpuctl.cli import entry\nentry._exit_now(3)\n"
                 "print('continued')")
        assert p.returncode == 0 and "continued" in p.stdout, (setup, p)
