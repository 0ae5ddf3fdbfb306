#!/usr/bin/env python3
"""`exec -- true` on every worker of emulated slices, nine ways, side by side in one run.

  seq-openssh   one `ssh HOST true` after another (a shell for-loop)
  par-openssh   one `ssh HOST true` process per worker, all at once (gcloud --worker=all,
                MaxText's multihost_runner)
  par-openssh-mux  the same through OpenSSH's connection sharing (ControlMaster=auto,
                ControlPersist, masters already open): the reuse baseline
  fabric        fabric.ThreadingGroup(...).run("true") (a thread and a paramiko client per host)
  tpuctl-cold   `tpuctl exec NAME -- true` as the first command on a node: worker cache empty
                (google-cloud import and one API call), no connection daemon
  tpuctl-cli    the same within a minute of another command (worker list from the cache), with
                persist_connections 0 (as in CI): new SSH connections from a new process
  tpuctl-persist  the same with the connection daemon on (tpuctl's default outside CI) and
                warm: the connections of the previous command are reused
  tpuctl-new    the same fan-out in process: SshWorkers(...).run("true") with new connections
  tpuctl-reuse  a second step on a SliceSession whose connections are already open

Every OpenSSH/fabric run uses tpuctl's key and pinned known_hosts with the options
`tpuctl ssh` uses (tpuctl.workers.openssh.ssh_option_args); every connection does a real key
exchange with the emulator's asyncssh server. Repetitions are interleaved (one of each method,
then the next round) so that background load hits every method alike; the table reports the
median and the best of the runs, and ratios of medians.

  python benchmarks/fanout.py [--sizes 4,16,64,256] [--repeat 3]
                              [--fabric-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    HERE,
    SIZES,
    Bench,
    Sample,
    fmt_ratio,
    fmt_s,
    machine,
    own_cpu_s,
    parse_sizes,
    proc_cpu_s,
    proc_hwm_kb,
    table,
    target,
    write_results,
)

METHODS = ["seq-openssh", "par-openssh", "par-openssh-mux", "fabric", "tpuctl-cold",
           "tpuctl-cli", "tpuctl-persist", "tpuctl-new", "tpuctl-reuse"]
OURS = ("tpuctl-new", "tpuctl-cli", "tpuctl-persist", "tpuctl-cold")


def find_fabric_python(explicit: str | None) -> tuple[str | None, str]:
    """An interpreter that can import fabric, and a note saying where it came from."""
    candidates = [explicit, os.environ.get("TPUCTL_BENCH_FABRIC_PYTHON")]
    if importlib.util.find_spec("fabric") is not None:
        candidates.append(sys.executable)
    candidates.append(str(HERE / ".venv" / "bin" / "python"))
    for c in candidates:
        if not c or not Path(c).exists():
            continue
        ok = subprocess.run([c, "-c", "import fabric"], capture_output=True).returncode == 0
        if ok:
            return c, f"fabric from {c}"
    return None, ("fabric not found: column skipped (pip install -r benchmarks/requirements.txt "
                  "into a separate venv and pass --fabric-python)")


class Slice:
    """One emulated slice and what every method needs to reach its workers."""

    def __init__(self, bench: Bench, size: int) -> None:
        from tpuctl import sshkeys
        from tpuctl.ops.access import ensure_access
        from tpuctl.ops.route import ssh_targets
        from tpuctl.workers.openssh import ssh_option_args

        self.name = f"fan{size}"
        self.size = size
        n = bench.create(self.name, SIZES[size])
        assert n == size, (n, size)
        self.ports = bench.ports()
        self.cloud = self.ports.cloud
        access = ensure_access(self.ports, self.name)  # our key in metadata, host keys pinned
        sl = access.slice
        self.targets = ssh_targets(sl, access.login.user, self.ports.route)
        self.key = sshkeys.key_path()
        self.known_hosts = sshkeys.known_hosts_path(sl)
        ssh = shutil.which("ssh") or "ssh"
        self.ssh_argv = [
            [ssh, *ssh_option_args(t, self.key, self.known_hosts), "-o", "BatchMode=yes",
             t.host, "true"]
            for t in self.targets
        ]
        control = ["-o", "ControlMaster=auto", "-o", "ControlPersist=300",
                   "-o", f"ControlPath={bench.tmp}/cm-%C"]
        self.mux_argv = [[*argv[:-2], *control, *argv[-2:]] for argv in self.ssh_argv]

    def mux_masters(self) -> list[int]:
        """The pids of the OpenSSH masters (their CPU is the client side of a mux run)."""
        pids = []
        for argv in self.mux_argv:
            p = subprocess.run([*argv[:-2], "-O", "check", argv[-2]], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL)
            if "pid=" in p.stderr:
                pids.append(int(p.stderr.split("pid=", 1)[1].split(")", 1)[0]))
        return pids

    def close_masters(self) -> None:
        for argv in self.mux_argv:
            subprocess.run([*argv[:-2], "-O", "exit", argv[-2]], capture_output=True,
                           stdin=subprocess.DEVNULL)


def forget_workers(sl: Slice) -> None:
    from tpuctl.ops import worker_cache

    worker_cache.forget(sl.cloud, sl.name)


def seq_openssh(sl: Slice) -> float:
    t0 = time.perf_counter()
    for argv in sl.ssh_argv:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit(f"ssh failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return time.perf_counter() - t0


def par_openssh(sl: Slice, mux: bool = False) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for argv in (sl.mux_argv if mux else sl.ssh_argv)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - t0
    bad = [c for c in codes if c != 0]
    if bad:
        raise SystemExit(f"parallel ssh: {len(bad)} of {len(codes)} failed, codes {set(bad)}")
    return elapsed


def fabric_runs(sl: Slice, python: str, n: int) -> tuple[list[float], list[float]]:
    job = {"hosts": [[t.host, t.port] for t in sl.targets], "user": sl.targets[0].username,
           "key": str(sl.key), "known_hosts": str(sl.known_hosts), "repeat": n,
           "command": "true"}
    p = subprocess.run([python, str(HERE / "fabric_runner.py")], input=json.dumps(job),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"fabric runner failed: {p.stdout[-1000:]}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout)
    return [float(x) for x in out["seconds"]], [float(x) for x in out["cpu_seconds"]]


async def tpuctl_new(sl: Slice) -> float:
    from tpuctl.workers.ssh import SshWorkers

    t0 = time.perf_counter()
    pool = SshWorkers(sl.targets, key_path=sl.key)
    try:
        results = await pool.run("true")
    finally:
        await pool.close()
    elapsed = time.perf_counter() - t0
    assert pool.connections_opened == sl.size, pool.connections_opened
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"tpuctl in-process: {len(bad)} failed: {bad[0]}")
    return elapsed


async def tpuctl_reuse(session: Any, size: int) -> float:
    t0 = time.perf_counter()
    results = await session.run("true")
    elapsed = time.perf_counter() - t0
    assert session.pool.connections_opened == size  # nothing reconnected
    if any(not r.ok for r in results):
        raise SystemExit("tpuctl reused step failed")
    return elapsed


class Meter:
    """CPU seconds per run: the client's (what a client also pays on a real slice) and the
    emulator's (on a real slice, spread over the workers' own VMs)."""

    def __init__(self, bench: Bench) -> None:
        self.pid = bench.proc.pid if bench.proc else 0
        self.client: dict[str, list[float]] = {m: [] for m in METHODS}
        self.server: dict[str, list[float]] = {m: [] for m in METHODS}

    def measured(self, method: str, fn: Any, *args: Any,
                 helpers: list[int] | None = None, **kw: Any) -> Any:
        """`helpers`: background processes of the client side (connection daemon, OpenSSH
        masters) whose CPU counts as the client's."""
        def side() -> float:
            return sum(proc_cpu_s(p) for p in helpers or [])

        c0, e0, h0 = own_cpu_s(), proc_cpu_s(self.pid), side()
        out = fn(*args, **kw)
        self.client[method].append(own_cpu_s() - c0 + side() - h0)
        self.server[method].append(proc_cpu_s(self.pid) - e0)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,16,64,256", help="comma-separated: 4,16,64,256")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each method per size")
    ap.add_argument("--seq-repeat-large", type=int, default=1,
                    help="runs of the sequential loop above 64 workers (it is slow)")
    ap.add_argument("--fabric-python", default=None,
                    help="a Python with fabric installed (default: $TPUCTL_BENCH_FABRIC_PYTHON, "
                    "this interpreter, or benchmarks/.venv)")
    ap.add_argument("--out", default="fanout", help="results/<out>.json")
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes)
    fabric_py, fabric_note = find_fabric_python(args.fabric_python)
    print(f"# fan-out of `exec -- true`; sizes {sizes}; {args.repeat} runs each; {fabric_note}",
          flush=True)

    info = machine()
    data: dict[str, Any] = {"benchmark": "fanout", "machine": info, "repeat": args.repeat,
                            "fabric": fabric_note, "sizes": {}}
    loop = asyncio.new_event_loop()
    with Bench() as bench:
        slices = {s: Slice(bench, s) for s in sizes}
        for size in sizes:
            sl = slices[size]
            runs: dict[str, list[float]] = {m: [] for m in METHODS}
            meter = Meter(bench)
            client_cpu, server_cpu = meter.client, meter.server
            measured = meter.measured
            rss_kb: list[int] = []

            forget_workers(sl)  # warm the page and bytecode caches of both CLI paths
            bench.time_tpuctl("exec", sl.name, "--", "true")
            bench.time_tpuctl("exec", sl.name, "--", "true")
            session = None
            from tpuctl.ops.session import open_session

            session = open_session(sl.ports, sl.name)
            warm = loop.run_until_complete(session.run("true"))  # opens the connections
            assert all(r.ok for r in warm)
            # the connection daemon: the first run starts it, the second fills it
            bench.time_tpuctl("exec", sl.name, "--", "true", persist=True)
            time.sleep(0.5)
            bench.time_tpuctl("exec", sl.name, "--", "true", persist=True)
            daemon = bench.daemon_pid()
            assert daemon, "the connection daemon did not start"
            par_openssh(sl, mux=True)  # opens the OpenSSH masters
            masters = sl.mux_masters()
            assert len(masters) == size, masters
            if fabric_py:
                # one fabric process for all of this size's runs (its interpreter start and
                # imports are not timed, as for tpuctl-new and the OpenSSH loops)
                runs["fabric"], client_cpu["fabric"] = fabric_runs(sl, fabric_py, args.repeat)
            seq_n = args.repeat if size <= 64 else args.seq_repeat_large
            for rnd in range(args.repeat):
                if rnd < seq_n:
                    runs["seq-openssh"].append(measured("seq-openssh", seq_openssh, sl))
                runs["par-openssh"].append(measured("par-openssh", par_openssh, sl))
                runs["par-openssh-mux"].append(measured("par-openssh-mux", par_openssh, sl,
                                                        True, helpers=masters))
                forget_workers(sl)
                for method in ("tpuctl-cold", "tpuctl-cli", "tpuctl-persist"):
                    secs, rss = measured(method, bench.time_tpuctl, "exec", sl.name, "--",
                                         "true", persist=method == "tpuctl-persist",
                                         helpers=[daemon] if method == "tpuctl-persist" else [])
                    runs[method].append(secs)
                    rss_kb.append(rss)
                runs["tpuctl-new"].append(measured(
                    "tpuctl-new", loop.run_until_complete, tpuctl_new(sl)))
                runs["tpuctl-reuse"].append(measured(
                    "tpuctl-reuse", loop.run_until_complete, tpuctl_reuse(session, size)))
            loop.run_until_complete(session.close())
            sl.close_masters()
            row = {m: Sample(v).to_dict() for m, v in runs.items() if v}
            for m, v in client_cpu.items():
                if v and m in row:
                    row[m]["client_cpu_median_s"] = round(Sample(v).median, 4)
            for m, v in server_cpu.items():
                if v and m in row:
                    row[m]["emulator_cpu_median_s"] = round(Sample(v).median, 4)
            data["sizes"][str(size)] = {
                "accelerator": SIZES[size], "methods": row,
                "tpuctl_cli_max_rss_mb": round(max(rss_kb) / 1024, 1),
                # the connection daemon serves every size so far: its peak up to this size
                "daemon_hwm_mb": round((proc_hwm_kb(daemon) or 0) / 1024, 1),
            }
            med = {m: Sample(v).median for m, v in runs.items() if v}
            print(f"  {size:>3} workers: " + ", ".join(f"{m} {fmt_s(med[m])}" for m in med),
                  flush=True)
        data["emulator_hwm_mb"] = round((bench.emulator_hwm_kb() or 0) / 1024, 1)
        data["emulator_workers_total"] = sum(sizes)
    loop.close()

    # -- tables, ratios and targets -----------------------------------------------------------
    def method_table(title: str, cell: Any) -> None:
        """One row per size, one column per method, `cell(method's results)` in each."""
        rows = []
        for size in sizes:
            m = data["sizes"][str(size)]["methods"]
            rows.append([str(size), *(cell(m[k]) if k in m else "skipped" for k in METHODS)])
        print(f"\n{title}\n")
        print(table(["workers", *METHODS], rows))

    method_table("median (best) wall time of `exec -- true` on every worker",
                 lambda r: f"{fmt_s(r['median_s'])} ({fmt_s(r['best_s'])})")
    method_table("median CPU per run: client / emulator (server side; '-' = not measurable)",
                 lambda r: f"{fmt_s(r.get('client_cpu_median_s'))} / "
                 f"{fmt_s(r.get('emulator_cpu_median_s'))}")

    ratio_rows = []
    for size in sizes:
        m = data["sizes"][str(size)]["methods"]
        ratios: dict[str, float | None] = {}
        for base in ("seq-openssh", "par-openssh", "fabric", "par-openssh-mux"):
            for ours in OURS:
                ratios[f"{base}/{ours}"] = (m[base]["median_s"] / m[ours]["median_s"]
                                            if base in m else None)
        ratios["tpuctl-new/tpuctl-reuse"] = m["tpuctl-new"]["median_s"] / \
            m["tpuctl-reuse"]["median_s"]
        ratios["tpuctl-cli/tpuctl-persist"] = m["tpuctl-cli"]["median_s"] / \
            m["tpuctl-persist"]["median_s"]
        data["sizes"][str(size)]["ratios"] = {k: None if v is None else round(v, 2)
                                              for k, v in ratios.items()}
        ratio_rows.append([str(size), *(fmt_ratio(v) for v in ratios.values())])
    print("\nhow many times faster tpuctl is (ratio of medians; baseline/tpuctl)\n")
    print(table(["workers", *data["sizes"][str(sizes[0])]["ratios"].keys()], ratio_rows))

    targets: dict[str, Any] = {}
    if 64 in sizes:
        r = data["sizes"]["64"]["ratios"]
        for ours in OURS:
            targets[f"64w {ours} >= 12x seq-openssh"] = r[f"seq-openssh/{ours}"] >= 12
            targets[f"64w {ours} >= 2x par-openssh"] = r[f"par-openssh/{ours}"] >= 2
            f = r[f"fabric/{ours}"]
            targets[f"64w {ours} >= 2x fabric"] = None if f is None else f >= 2
    if 256 in sizes:
        m = data["sizes"]["256"]["methods"]
        targets["256w tpuctl-cli <= 5 s"] = m["tpuctl-cli"]["median_s"] <= 5
        targets["256w tpuctl-persist <= 1 s"] = m["tpuctl-persist"]["median_s"] <= 1
        targets["256w tpuctl-cold <= 5 s"] = m["tpuctl-cold"]["median_s"] <= 5
        targets["256w tpuctl-new <= 5 s"] = m["tpuctl-new"]["median_s"] <= 5
        targets["256w tpuctl-reuse <= 1 s"] = m["tpuctl-reuse"]["median_s"] <= 1
        targets["256w tpuctl exec RSS < 300 MB"] = \
            data["sizes"]["256"]["tpuctl_cli_max_rss_mb"] < 300
        targets["256w connection daemon RSS < 300 MB"] = \
            data["sizes"]["256"]["daemon_hwm_mb"] < 300
    targets[f"emulator peak RSS < 2 GB ({data['emulator_workers_total']} workers)"] = \
        data["emulator_hwm_mb"] < 2048
    data["targets"] = targets
    print("\nmemory: tpuctl exec peak RSS " + ", ".join(
        f"{s}w {data['sizes'][str(s)]['tpuctl_cli_max_rss_mb']} MB" for s in sizes)
        + "; connection daemon peak RSS " + ", ".join(
        f"{s}w {data['sizes'][str(s)]['daemon_hwm_mb']} MB" for s in sizes)
        + f"; emulator peak RSS {data['emulator_hwm_mb']} MB "
        f"(serving {data['emulator_workers_total']} workers)")
    print("\ntargets\n")
    print(table(["target", "result"], [[k, target(v)] for k, v in targets.items()]))
    path = write_results(args.out, data)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
