#!/usr/bin/env python3
"""The client at 1,024 workers: `tpuctl create NAME --type v4-1024 --slices 8` (one multislice
queued resource, 8 slices of 128 hosts) on the emulator, then `exec -- true` on every worker
with new connections and through the warm connection daemon, against parallel OpenSSH (one
`ssh HOST true` per worker from `tpuctl ssh-config`, at most --ssh-parallel at a time) in the
same run, rounds interleaved; peak RSS of each `tpuctl` process, of the daemon and of the
emulator; `down` of the whole group.

    python benchmarks/multislice_scale.py [--type v4-1024] [--slices 8] [--repeat 3]

A measurement, not a test. Results: benchmarks/results/multislice_scale.json and
docs/performance.md ("1,024 workers").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Bench, Sample, machine, proc_cpu_s, proc_hwm_kb, tpuctl_exe, write_results

NAME = "big"


def daemon_pid(b: Bench) -> int | None:
    p = subprocess.run([sys.executable, "-m", "tpuctl", "mux", "status", "--json"],
                       capture_output=True, text=True, env=b.env, cwd=b.cwd)
    try:
        pid = json.loads(p.stdout).get("pid")
    except (ValueError, AttributeError):
        return None
    return int(pid) if pid else None


def run_cpu(b: Bench, *args: str, persist: bool = False, daemon: int | None = None,
            cwd: Path | None = None) -> tuple[float, int, float, float, float]:
    """(wall s, peak RSS KiB, the command's own CPU s, the emulator's CPU s, the daemon's CPU
    s) of one `tpuctl ARGS`: where a run's time goes."""
    env = b.env
    if persist:
        env["TPUCTL_PERSIST_CONNECTIONS"] = "300"
    assert b.proc is not None
    emu0 = proc_cpu_s(b.proc.pid)
    d0 = proc_cpu_s(daemon) if daemon else 0.0
    t0 = time.perf_counter()
    p = subprocess.Popen([tpuctl_exe(), *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                         cwd=cwd or b.cwd)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tpuctl {' '.join(args)} failed")
    return (wall, int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime,
            proc_cpu_s(b.proc.pid) - emu0, (proc_cpu_s(daemon) - d0) if daemon else 0.0)


def par_openssh(config: Path, hosts: list[str], parallel: int) -> float:
    t0 = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    failed = 0
    for host in hosts:
        while len(running) >= parallel:
            still = []
            for p in running:
                if p.poll() is None:
                    still.append(p)
                elif p.returncode != 0:
                    failed += 1
            running = still
            if len(running) >= parallel:
                time.sleep(0.002)
        running.append(subprocess.Popen(["ssh", "-F", str(config), "-o", "BatchMode=yes", host,
                                         "true"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in running:
        failed += p.wait() != 0
    elapsed = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"parallel ssh: {failed} of {len(hosts)} failed")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--type", default="v4-1024")
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ssh-parallel", type=int, default=256)
    ap.add_argument("--loop", action="store_true",
                    help="also sync, launch and tail --follow on every worker")
    args = ap.parse_args()
    out: dict[str, object] = {"machine": machine(), "type": args.type, "slices": args.slices}
    with Bench(create_delay=0.05) as b:
        t0 = time.perf_counter()
        created, create_rss = b.time_tpuctl("create", NAME, "--type", args.type,
                                            "--slices", str(args.slices))
        workers = len(json.loads(b.tpuctl("describe", NAME, "--json").stdout)["workers"])
        print(f"create: {workers} workers in {created:.1f}s, tpuctl peak {create_rss // 1024} MB",
              flush=True)
        config = b.tmp / "ssh_config"
        config.write_text(b.tpuctl("ssh-config", NAME).stdout)
        hosts = re.findall(r"^Host (\S+)$", config.read_text(), re.M)
        assert len(hosts) == workers, (len(hosts), workers)
        b.time_tpuctl("exec", NAME, "--", "true", persist=True)  # start and warm the daemon
        dpid = daemon_pid(b)
        new, daemon, ssh = [], [], []
        new_rss, daemon_rss = 0, 0
        cpu: dict[str, list[list[float]]] = {"new": [], "daemon": []}
        for _ in range(args.repeat):
            s, rss, own, emu, _d = run_cpu(b, "exec", NAME, "--", "true")
            new.append(s)
            new_rss = max(new_rss, rss)
            cpu["new"].append([round(own, 2), round(emu, 2)])
            s, rss, own, emu, dcpu = run_cpu(b, "exec", NAME, "--", "true", persist=True,
                                             daemon=dpid)
            daemon.append(s)
            daemon_rss = max(daemon_rss, rss)
            cpu["daemon"].append([round(own, 2), round(emu, 2), round(dcpu, 2)])
            ssh.append(par_openssh(config, hosts, args.ssh_parallel))
            print(f"round: new {new[-1]:.2f}s, daemon {daemon[-1]:.2f}s, "
                  f"parallel OpenSSH {ssh[-1]:.2f}s; cpu {cpu['new'][-1]} {cpu['daemon'][-1]}",
                  flush=True)
        daemon_mb = (proc_hwm_kb(dpid) or 0) // 1024 if dpid else None
        if args.loop:  # the loop's other steps on every worker: sync, launch, tail --follow
            repo = b.tmp / "repo"
            repo.mkdir()
            (repo / "job.sh").write_text("echo hello from $TPUCTL_WORKER_ID\n")
            for git in (["init", "-q", "-b", "main"], ["add", "-A"],
                        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"]):
                subprocess.run(["git", "-C", str(repo), *git], check=True)
            loop = {}
            for step, argv in (("sync", ["sync", NAME]),
                               ("launch", ["launch", NAME, "--run-id", "r1", "--", "bash",
                                           "job.sh"]),
                               ("tail_follow", ["tail", NAME, "r1", "--follow"])):
                wall, rss, own, emu, _d = run_cpu(b, *argv, cwd=repo)
                loop[step] = {"s": round(wall, 2), "rss_mb": rss // 1024,
                              "cpu_command_s": round(own, 2), "cpu_emulator_s": round(emu, 2)}
                print(f"{step}: {wall:.2f}s, {rss // 1024} MB", flush=True)
            out["loop"] = loop
        down, _ = b.time_tpuctl("down", NAME, "--yes")
        out.update({
            "workers": workers, "create_s": round(created, 2),
            "create_tpuctl_rss_mb": create_rss // 1024,
            "exec_new": Sample(new).to_dict(), "exec_new_rss_mb": new_rss // 1024,
            "exec_daemon": Sample(daemon).to_dict(), "exec_daemon_rss_mb": daemon_rss // 1024,
            "daemon_rss_mb": daemon_mb,
            "cpu_s": {"new: [command, emulator]": cpu["new"],
                      "daemon: [command, emulator, daemon]": cpu["daemon"]},
            "parallel_openssh": Sample(ssh).to_dict(), "ssh_parallel": args.ssh_parallel,
            "emulator_rss_mb": (proc_hwm_kb(b.proc.pid) or 0) // 1024 if b.proc else None,
            "down_s": round(down, 2), "total_s": round(time.perf_counter() - t0, 1),
        })
    write_results("multislice_scale", out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
