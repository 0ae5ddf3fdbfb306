"""Shared harness for the benchmarks: an emulator in its own process, an isolated HOME, timing,
tables and JSON results.

Every benchmark script runs with the interpreter that has tpuctl installed. It starts
`tpuctl emulator serve` as a child process (so the emulator's memory and CPU are its own),
points a private HOME at a temporary directory (tpuctl keeps its SSH key in ~/.tpuctl/ssh),
creates the slices it needs, and tears everything down at the end.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# emulated slice sizes (workers) and the accelerator types that have that many hosts
SIZES: dict[int, str] = {1: "v6e-8", 4: "v6e-16", 16: "v6e-64", 64: "v6e-256",
                         256: "v4-2048"}


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"unsupported size(s) {bad}; choose from {sorted(SIZES)}")
    return sizes


def tpuctl_exe() -> str:
    """The `tpuctl` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("tpuctl")
    if exe.exists():
        return str(exe)
    found = shutil.which("tpuctl")
    if not found:
        raise SystemExit("tpuctl is not installed in this environment (pip install -e .)")
    return found


# -- statistics ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """Repeated measurements of one thing, in seconds."""

    values: list[float]

    @property
    def best(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": len(self.values), "best_s": round(self.best, 4),
                "median_s": round(self.median, 4),
                "all_s": [round(v, 4) for v in self.values]}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def repeat(fn: Callable[[], float], n: int) -> Sample:
    """Call `fn` (which returns seconds) n times."""
    return Sample([fn() for _ in range(n)])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- machine ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip() \
        if shutil.which("ssh") else "absent"
    import asyncssh

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "openssh": ssh_v,
        "asyncssh": asyncssh.__version__,
        "loadavg_at_start": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process plus its waited-for children (the client side of a run)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def proc_hwm_kb(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def bytecode_env(pycache: Path) -> dict[str, str]:
    """Environment for child Pythons that caches bytecode, as after a normal `pip install`.

    Some sandboxes set PYTHONDONTWRITEBYTECODE=1 and ship site-packages without __pycache__,
    so every import compiles from source (measured: +0.7 s on `tpuctl exec`). Users do not
    run like that: the children get a private PYTHONPYCACHEPREFIX that the first run fills.
    """
    pycache.mkdir(parents=True, exist_ok=True)
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(pycache)}


# -- the emulator and an isolated tpuctl environment ---------------------------------------------
class Bench:
    """An emulator child process plus a private HOME; `with Bench() as b: ...`.

    The benchmark process itself also switches HOME (os.environ), so in-process tpuctl calls
    use the same SSH key and known_hosts files as the `tpuctl` subprocesses.
    """

    def __init__(self, create_delay: float = 0.2, keep: bool = False) -> None:
        self.create_delay = create_delay
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="tpuctl-bench-"))
        self.pycache = self.tmp / "pycache"
        self.home = self.tmp / "home"
        self.home.mkdir()
        self.state = self.tmp / "emulator"
        self.cwd = self.tmp / "cwd"  # not a git repo: launch uses $HOME as its workdir
        self.cwd.mkdir()
        self.endpoint = ""
        self.proc: subprocess.Popen[str] | None = None
        self._old_env: dict[str, str] = {}

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TPUCTL_", "CLOUDSDK_", "GOOGLE_"))}
        env.update(HOME=str(self.home), NO_GCE_CHECK="True",
                   CLOUDSDK_CONFIG=str(self.home / "gcloud"), PYTHONUNBUFFERED="1",
                   COLUMNS="200")
        env.update(bytecode_env(self.pycache))
        # no connection daemon unless a method asks for one (time_tpuctl(persist=True))
        env["TPUCTL_PERSIST_CONNECTIONS"] = "0"
        if self.endpoint:
            env["TPUCTL_API_ENDPOINT"] = self.endpoint
            env["TPUCTL_API_TOKEN_FILE"] = str(self.state / "token")  # the emulator's own
        return env

    def __enter__(self) -> Bench:
        self.proc = subprocess.Popen(
            [tpuctl_exe(), "emulator", "serve", "--state-dir", str(self.state), "--port", "0",
             "--create-delay", str(self.create_delay)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, env=self.env, cwd=self.cwd, start_new_session=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if line.startswith("export TPUCTL_API_ENDPOINT="):
                self.endpoint = line.strip().split("=", 1)[1]
                break
        if not self.endpoint:
            self.proc.kill()
            raise SystemExit("the emulator did not start:\n" + "".join(seen))
        # drain the rest of its output so it never blocks on a full pipe
        import threading

        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        for k, v in self.env.items():
            if os.environ.get(k) != v:
                self._old_env[k] = os.environ.get(k, "\0")
                os.environ[k] = v
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([tpuctl_exe(), "mux", "stop"], capture_output=True, env=self.env,
                       cwd=self.cwd)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for k, v in self._old_env.items():
            if v == "\0":
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- running tpuctl -------------------------------------------------------------------------
    def tpuctl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([tpuctl_exe(), *args], capture_output=True, text=True, env=self.env,
                           cwd=self.cwd, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if p.returncode != 0:
            raise SystemExit(f"tpuctl {' '.join(args)} failed ({p.returncode}):\n"
                             f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return p

    def time_tpuctl(self, *args: str, persist: bool = False) -> tuple[float, int]:
        """Wall seconds and peak RSS (KiB) of one `tpuctl ARGS` process, output discarded.
        `persist`: with the connection daemon on (tpuctl's default outside CI)."""
        env = self.env
        if persist:
            env["TPUCTL_PERSIST_CONNECTIONS"] = "300"
        t0 = time.perf_counter()
        p = subprocess.Popen([tpuctl_exe(), *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                             cwd=self.cwd)
        # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        if p.stderr:
            p.stderr.close()
        if p.returncode != 0:
            raise SystemExit(f"tpuctl {' '.join(args)} failed ({p.returncode}):\n{err[-2000:]}")
        return elapsed, int(usage.ru_maxrss)

    def create(self, name: str, accelerator: str) -> int:
        """Create a slice (if absent) and return its number of workers."""
        listed = json.loads(self.tpuctl("list", "--json").stdout or "[]")
        names = {n.get("name") for n in (listed if isinstance(listed, list)
                                         else listed.get("nodes", []))}
        if name not in names:
            self.tpuctl("create", name, "--type", accelerator)
        info = json.loads(self.tpuctl("describe", name, "--json").stdout)
        return len(info["workers"])

    def daemon_pid(self) -> int | None:
        """The connection daemon's pid, if one runs (its CPU is client-side work)."""
        for pid_file in (self.home / ".tpuctl" / "mux").glob("*.pid"):
            try:
                return int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return None

    def emulator_hwm_kb(self) -> int | None:
        return proc_hwm_kb(self.proc.pid) if self.proc else None

    def ports(self) -> Any:
        """tpuctl's ports (tpuctl/wiring.py) on this emulator, as the CLI builds them."""
        from tpuctl.wiring import ports

        return ports(self.endpoint, None, None)


# -- output -------------------------------------------------------------------------------------
def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (also readable in a terminal)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def target(met: bool | None) -> str:
    return "n/a" if met is None else ("MET" if met else "MISSED")
