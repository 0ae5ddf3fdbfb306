#!/usr/bin/env python3
"""`tail --follow` latency: from a line written on a worker to its arrival in tpuctl.

A job launched with `tpuctl launch` prints "ready" on every worker and waits for a go-file;
`tpuctl.ops.runs.tail(..., follow=True)` runs in this process, and once every worker's
"ready" line has arrived (every follower is streaming) the go-file is touched on all workers
over the same session. The job then prints `time.time()` every --interval seconds, and for
each line this records arrival time minus the written timestamp. Workers share this
machine's clock, so the difference is the real latency (log file -> follow.sh's
`tail -f | sed -u` -> SSH -> here).

  python benchmarks/tail_latency.py [--workers 64] [--lines 60] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    SIZES,
    Bench,
    fmt_s,
    machine,
    percentile,
    table,
    target,
    write_results,
)

GO = ".tpuctl-bench-tail-go"
JOB = """
import os, sys, time
n, every = int(sys.argv[1]), float(sys.argv[2])
go = os.path.join(os.environ["HOME"], "@GO@")
print("ready", flush=True)
deadline = time.time() + 600
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.01)
for i in range(n):
    print(f"{time.time():.6f}", flush=True)
    time.sleep(every)
""".replace("@GO@", GO)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=64, choices=sorted(SIZES))
    ap.add_argument("--lines", type=int, default=60, help="lines per worker")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between lines")
    ap.add_argument("--out", default="tail_latency")
    args = ap.parse_args()
    name = "tail"
    print(f"# tail --follow latency; {args.workers} workers x {args.lines} lines every "
          f"{args.interval}s", flush=True)
    data: dict[str, Any] = {"benchmark": "tail_latency", "machine": machine(),
                            "workers": args.workers, "lines_per_worker": args.lines,
                            "interval_s": args.interval}
    latencies: list[float] = []
    per_worker: dict[int, list[float]] = {}
    with Bench() as bench:
        bench.create(name, SIZES[args.workers])
        bench.time_tpuctl("exec", name, "--", "true")  # key in metadata
        bench.tpuctl("exec", name, "--", "rm", "-f", GO)
        t0 = time.perf_counter()
        run_id = bench.tpuctl("launch", name, "--", "python3", "-c", JOB, str(args.lines),
                              str(args.interval)).stdout.strip().splitlines()[-1]
        data["launch_cli_s"] = round(time.perf_counter() - t0, 3)
        from tpuctl.ops.runs import tail
        from tpuctl.ops.session import open_session

        cloud = bench.ports()
        ready: set[int] = set()
        all_ready = asyncio.Event()

        def on_line(index: int, line: str) -> None:
            now = time.time()
            if line.strip() == "ready":
                ready.add(index)
                if len(ready) == args.workers:
                    all_ready.set()
                return
            try:
                written = float(line.strip())
            except ValueError:
                return
            latencies.append(now - written)
            per_worker.setdefault(index, []).append(now - written)

        async def follow() -> Any:
            session = open_session(cloud, name)
            t_follow = time.perf_counter()

            async def go() -> None:
                await all_ready.wait()
                data["followers_ready_s"] = round(time.perf_counter() - t_follow, 3)
                res = await session.run(f'touch "$HOME/{GO}"')
                assert all(r.ok for r in res), res

            try:
                got = await asyncio.gather(
                    tail(session, run_id, lines=None, follow=True, on_line=on_line), go())
                return got[0]
            finally:
                await session.close()

        result = asyncio.run(follow())
        data["exit_code"] = result.exit_code
        data["reconnects"] = result.reconnects
    expected = args.workers * args.lines
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    worst_p95 = max(percentile(v, 95) for v in per_worker.values()) if per_worker else None
    data.update(lines_received=len(latencies), lines_expected=expected,
                p50_s=round(p50, 4), p95_s=round(p95, 4), p99_s=round(percentile(latencies, 99), 4),
                max_s=round(max(latencies), 4), mean_s=round(statistics.fmean(latencies), 4),
                worst_worker_p95_s=None if worst_p95 is None else round(worst_p95, 4))
    met = p95 <= 1.0 and len(latencies) == expected
    data["targets"] = {f"{args.workers}w tail --follow p95 <= 1 s (no line lost)": met}
    print()
    print(table(["workers", "lines", "p50", "p95", "p99", "max", "worst worker p95"], [[
        str(args.workers), f"{len(latencies)}/{expected}", fmt_s(p50), fmt_s(p95),
        fmt_s(data["p99_s"]), fmt_s(data["max_s"]), fmt_s(worst_p95)]]))
    print(f"\ntarget: p95 <= 1 s at {args.workers} workers: {target(met)} "
          f"(job exit {data['exit_code']}, {data['reconnects']} reconnects)")
    print(f"wrote {write_results(args.out, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
