#!/usr/bin/env python3
"""CLI start-up: `tpuctl --help` against `python -c "import typer"` (and a few references).

Each command runs --repeat times, interleaved, as a fresh process; the table shows the median
and the best wall time. Two modes:
  cached    bytecode caching on (a private PYTHONPYCACHEPREFIX, filled by a warm-up run):
            what users get after `pip install`, which compiles .pyc files;
  no-pyc    PYTHONDONTWRITEBYTECODE=1 and an empty PYTHONPYCACHEPREFIX: every import compiles
            from source, as in sandboxes whose site-packages ship without __pycache__
            (reported for reference).

  python benchmarks/startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Sample,
    bytecode_env,
    fmt_ratio,
    fmt_s,
    machine,
    table,
    target,
    tpuctl_exe,
    write_results,
)

HELLO_TYPER = """
import typer
app = typer.Typer()
@app.command()
def a(x: int = 1):
    "first"
@app.command()
def b(y: str = "b"):
    "second"
app()
"""


def commands(hello: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    py, tp = sys.executable, tpuctl_exe()
    return {
        "python -c pass": ([py, "-c", "pass"], {}),
        'python -c "import typer"': ([py, "-c", "import typer"], {}),
        "hello-world typer app --help": ([py, str(hello), "--help"], {}),
        "tpuctl --help": ([tp, "--help"], {}),
        "tpuctl exec --help": ([tp, "exec", "--help"], {}),
        "tpuctl --version": ([tp, "--version"], {}),
        # what-if: typer's plain (click) help instead of rich's (see docs/performance.md)
        "TYPER_USE_RICH=0 tpuctl --help": ([tp, "--help"], {"TYPER_USE_RICH": "0"}),
        # every other command's help (issue 18: each within 1.3x `import typer`)
        **{f"tpuctl {c} --help": ([tp, c, "--help"], {}) for c in command_names()
           if c != "exec"},
    }


def command_names() -> list[str]:
    from tpuctl.cli import main

    return [str(c.name) for c in main.app.registered_commands] + \
        [str(g.name) for g in main.app.registered_groups]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv} failed: {p.stderr.decode()[-500:]}")
    return elapsed


def measure(mode: str, repeat: int, tmp: Path, hello: Path) -> dict[str, Sample]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TPUCTL_", "TYPER_"))}
    base.update(HOME=str(tmp / "home"), COLUMNS="100", NO_GCE_CHECK="True")
    if mode == "cached":
        base.update(bytecode_env(tmp / "pycache"))
    else:
        # an empty prefix tree hides any __pycache__ next to the sources: nothing is cached
        empty = tmp / "no-pycache"
        empty.mkdir(exist_ok=True)
        base.update(PYTHONPYCACHEPREFIX=str(empty), PYTHONDONTWRITEBYTECODE="1")
    cmds = commands(hello)
    for argv, extra in cmds.values():  # warm-up: page cache, and the bytecode cache if on
        run_once(argv, {**base, **extra})
    runs: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, (argv, extra) in cmds.items():
            runs[k].append(run_once(argv, {**base, **extra}))
    return {k: Sample(v) for k, v in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default="startup")
    ap.add_argument("--modes", default="cached,no-pyc", help="cached, no-pyc or both")
    args = ap.parse_args()
    print(f"# start-up; {args.repeat} runs of each command per mode, interleaved", flush=True)
    data: dict[str, Any] = {"benchmark": "startup", "machine": machine(),
                            "repeat": args.repeat, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="tpuctl-bench-startup-") as t:
        tmp = Path(t)
        (tmp / "home").mkdir()
        hello = tmp / "hello_typer.py"
        hello.write_text(HELLO_TYPER)
        for mode in [m for m in ("cached", "no-pyc") if m in args.modes.split(",")]:
            samples = measure(mode, args.repeat, tmp, hello)
            typer_med = samples['python -c "import typer"'].median
            typer_best = samples['python -c "import typer"'].best
            rows, out = [], {}
            for k, s in samples.items():
                r_med, r_best = s.median / typer_med, s.best / typer_best
                out[k] = {**s.to_dict(), "vs_import_typer_median": round(r_med, 2),
                          "vs_import_typer_best": round(r_best, 2)}
                rows.append([k, fmt_s(s.median), fmt_s(s.best), fmt_ratio(r_med),
                             fmt_ratio(r_best)])
            data["modes"][mode] = out
            print(f"\nmode: {mode}\n")
            print(table(["command", "median", "best", "/typer (median)", "/typer (best)"], rows))
    cached = data["modes"]["cached"]
    helps = {k: v["vs_import_typer_median"] for k, v in cached.items()
             if k.startswith("tpuctl ") and k.endswith("--help")}
    worst = max(helps, key=lambda k: helps[k])
    data["targets"] = {
        "tpuctl --help <= 1.3x import typer (cached bytecode, median)":
            helps["tpuctl --help"] <= 1.3,
        f"every COMMAND --help <= 1.3x import typer (worst: {worst}, {helps[worst]}x)":
            helps[worst] <= 1.3,
    }
    for k, v in data["targets"].items():
        print(f"\ntarget: {k}: {target(v)}")
    print(f"wrote {write_results(args.out, data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
