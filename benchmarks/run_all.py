#!/usr/bin/env python3
"""Run every benchmark in turn (about 8-10 minutes on a 2-core machine with 256 workers).

  python benchmarks/run_all.py [--sizes 4,16,64,256] [--fabric-python PATH] [--quick]

--quick: sizes 4,16,64, fewer repetitions (about 3 minutes). Each benchmark prints its own
table and writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,16,64,256")
    ap.add_argument("--fabric-python", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = "4,16,64" if args.quick else args.sizes
    rep = ["--repeat", "2"] if args.quick else []
    fabric = ["--fabric-python", args.fabric_python] if args.fabric_python else []
    plan = [
        ["startup.py", *(["--repeat", "5"] if args.quick else [])],
        ["fanout.py", "--sizes", sizes, *rep, *fabric],
        ["bootstrap_noop.py", *(["--repeat", "3"] if args.quick else [])],
        ["tail_latency.py", *(["--workers", "16"] if args.quick else [])],
        ["small_slices.py", *(["--repeat", "3"] if args.quick else [])],
    ]
    failed = []
    t0 = time.perf_counter()
    for script, *rest in plan:
        print(f"\n===== {script} {' '.join(rest)}", flush=True)
        code = subprocess.run([sys.executable, str(HERE / script), *rest]).returncode
        if code:
            failed.append(script)
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
