"""Rewrite the golden `--dry-run` transcripts: `python -m tests.golden.regen`.

Run it after a change that is meant to alter what a command sends, then read the diff
(`git diff tests/golden/`) before committing it: it is the review of that change.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.golden.cases import GOLDEN, cases, path, transcript


def main() -> int:
    names = cases()
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            code, out, err = transcript(name, Path(tmp))
        if code != 0:
            sys.stderr.write(f"{name}: exit {code}\n{err}")
            return 1
        path(name).write_text(out)
        print(f"wrote {path(name).relative_to(GOLDEN.parents[1])}")
    for stale in sorted(set(GOLDEN.glob("*.txt")) - {path(n) for n in names}):
        stale.unlink()
        print(f"removed {stale.relative_to(GOLDEN.parents[1])} (no such case any more)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
