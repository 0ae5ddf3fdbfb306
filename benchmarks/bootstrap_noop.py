#!/usr/bin/env python3
"""`tpuctl bootstrap NAME` when every worker already has the venv (the marker's no-op path)
against a plain `tpuctl exec NAME -- true`, both as a user runs them (CLI processes).

The first bootstrap (empty requirements) builds the venv and is reported but not compared;
then the cached bootstrap and the plain exec alternate, --repeat times each.

  python benchmarks/bootstrap_noop.py [--workers 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    SIZES,
    Bench,
    Sample,
    fmt_ratio,
    fmt_s,
    machine,
    table,
    target,
    write_results,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=16, choices=sorted(SIZES))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="bootstrap_noop")
    args = ap.parse_args()
    name = "boot"
    print(f"# bootstrap no-op vs exec -- true; {args.workers} workers; {args.repeat} runs each",
          flush=True)
    data: dict[str, Any] = {"benchmark": "bootstrap_noop", "machine": machine(),
                            "workers": args.workers, "repeat": args.repeat}
    with Bench() as bench:
        bench.create(name, SIZES[args.workers])
        bench.time_tpuctl("exec", name, "--", "true")  # key in metadata, caches warm
        first, _ = bench.time_tpuctl("bootstrap", name)
        out = bench.tpuctl("bootstrap", name, "--json").stdout
        assert '"cached": true' in out, out  # the second run really is the no-op path
        boot, exe = [], []
        for _ in range(args.repeat):
            boot.append(bench.time_tpuctl("bootstrap", name)[0])
            exe.append(bench.time_tpuctl("exec", name, "--", "true")[0])
    b, e = Sample(boot), Sample(exe)
    ratio = b.median / e.median
    data.update(first_bootstrap_s=round(first, 3), bootstrap_noop=b.to_dict(),
                exec_true=e.to_dict(), ratio_median=round(ratio, 2),
                ratio_best=round(b.best / e.best, 2))
    met = ratio <= 2
    data["targets"] = {f"{args.workers}w bootstrap no-op <= 2x exec -- true": met}
    print()
    print(table(["command", "median", "best"], [
        [f"tpuctl bootstrap {name} (cached)", fmt_s(b.median), fmt_s(b.best)],
        [f"tpuctl exec {name} -- true", fmt_s(e.median), fmt_s(e.best)],
        ["ratio bootstrap/exec", fmt_ratio(ratio), fmt_ratio(b.best / e.best)],
    ]))
    print(f"\n(first bootstrap, building the venv: {fmt_s(first)})")
    print(f"target: bootstrap no-op <= 2x exec: {target(met)}")
    print(f"wrote {write_results(args.out, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
