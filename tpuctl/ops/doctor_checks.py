"""`tpuctl doctor`'s verdicts, without I/O: remote/doctor.sh's lines parsed, what holds only
across workers (package versions that must agree, clock offsets), the fix for each failed
check, and the exit code. ops/doctor.py gathers the facts; this module judges them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tpuctl.errors import ExitCode

STATUSES = ("ok", "warn", "fail", "skip")
# a worker's clock this far from this machine's (after the round trip's uncertainty)
CLOCK_WARN_S = 1.0
CLOCK_FAIL_S = 60.0
PACKAGES = ("jax", "jaxlib", "libtpu")

# The fix for each check that can fail or warn (docs/troubleshooting.md has an entry each).
FIXES = {
    "config": "set the project and zone (`tpuctl config` shows where each comes from)",
    "credentials": "run `gcloud auth application-default login` (or, for the emulator, "
                   "`eval \"$(tpuctl emulator start)\"`)",
    "api": "check the endpoint, project and zone (`tpuctl config`) and your network",
    "node": "check the name (`tpuctl list`), or wait until the node is READY",
    "ssh-key": "chmod 600 ~/.tpuctl/ssh/tpuctl_ed25519 (OpenSSH ignores a key others can read)",
    "ssh-config": "chmod 600 ~/.ssh/config (OpenSSH refuses a config others can write); "
                  "install openssh-client for `tpuctl ssh`",
    "route": "give a way in: --internal-ip inside the VPC, --ssh-proxy-jump USER@HOST, or "
             "--tunnel-through-iap",
    "workers": "wait a minute and re-run; if workers stay missing, recreate the node "
               "(`tpuctl down NAME --yes`, then `tpuctl up`)",
    "ssh": "check the way in (`tpuctl doctor` without a node checks this machine's side); "
           "a worker that never answers needs the node recreated",
    "disk-home": "free space on that worker (old venvs under ~/.tpuctl/venvs, checkpoints, "
                 "caches: `tpuctl exec NAME -w I -- du -sh ~/* ~/.cache`)",
    "disk-tmp": "free space under /tmp on that worker (`tpuctl exec NAME -w I -- du -sh /tmp`)",
    "tpu": "stop the process holding the TPU (`tpuctl stop NAME`, or `tpuctl launch --force`)",
    "lockfile": "remove the stale /tmp/libtpu_lockfile (`tpuctl stop NAME` clears it)",
    "python": "use a runtime image with python3 (e.g. tpu-ubuntu2204-base)",
    "venv": "bootstrap makes venvs with uv, which needs no ensurepip; plain `python3 -m venv` "
            "needs python3-venv",
    "packages": "re-run `tpuctl bootstrap NAME` so every worker has the same venv",
    "clock": "the worker's clock is off: restart chrony/systemd-timesyncd on it, or recreate "
             "the node",
    "metadata": "this host never registered with its slice: recreate the node",
    "port": "open the port between the workers (a VPC firewall rule for the workers' "
            "internal range), then re-run",
    "run-port": "open the run's coordinator port between the workers: tpuctl picks it per "
                "run in 20000-39999 (JAX_COORDINATOR_ADDRESS), so a rule for 8476 alone is "
                "not enough; allow TCP 20000-39999 (or all TCP) within the workers' range",
}


@dataclass(frozen=True)
class Check:
    """One check's verdict: `status` ok|warn|fail|skip, its facts, free text."""

    name: str
    status: str
    fields: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def bad(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"check": self.name, "status": self.status, **self.fields}
        if self.detail:
            d["detail"] = self.detail
        if self.status in ("fail", "warn") and self.name in FIXES:
            d["fix"] = FIXES[self.name]
        return d


def parse_lines(text: str) -> list[Check]:
    """doctor.sh's output: `check=NAME status=S [K=V...] [detail=free text]` per line; any
    other line is ignored (a worker's shell may print more), a bad status is a failure."""
    out = []
    for line in text.splitlines():
        head, _, detail = line.strip().partition(" detail=")
        if head.startswith("detail="):
            head, detail = "", head[len("detail="):]
        words = dict(w.split("=", 1) for w in head.split() if "=" in w)
        name = words.pop("check", "")
        status = words.pop("status", "")
        if not name:
            continue
        if status not in STATUSES:
            status, detail = "fail", f"unreadable status {status[:20]!r}"
        out.append(Check(name[:40], status, {k[:40]: v[:200] for k, v in words.items()},
                         detail[:500]))
    return out


def registered_as(c: Check, index: int) -> Check:
    """A `metadata` check that also fails when the host registered under another worker
    number than the API lists it at (`index`: within its slice; its JAX process id would
    collide)."""
    worker = c.fields.get("worker")
    if c.name != "metadata" or c.status != "ok" or worker in (None, str(index)):
        return c
    return Check("metadata", "fail", c.fields, f"this host registered as worker {worker}, "
                 f"the API lists it as worker {index}")


def clock_check(epoch: str | None, sent: float, received: float) -> Check:
    """The worker's clock against this machine's: its reading against the middle of the
    round trip, less half the round trip (how far off it could be while still right)."""
    try:
        theirs = float(epoch or "")
    except ValueError:
        return Check("clock", "warn", detail="the worker did not report its clock")
    offset = theirs - (sent + received) / 2
    slack = (received - sent) / 2
    off = max(0.0, abs(offset) - slack)
    fields = {"offset_s": f"{offset:+.3f}", "uncertainty_s": f"{slack:.3f}"}
    if off > CLOCK_FAIL_S:
        return Check("clock", "fail", fields, f"{offset:+.1f}s off this machine's clock")
    if off > CLOCK_WARN_S:
        return Check("clock", "warn", fields, f"{offset:+.1f}s off this machine's clock")
    return Check("clock", "ok", fields)


def versions(check: Check) -> tuple[str, ...] | None:
    """jax, jaxlib, libtpu as a `packages` check reported them (None: not reported)."""
    if check.status != "ok" or not any(p in check.fields for p in PACKAGES):
        return None
    return tuple(check.fields.get(p, "-") for p in PACKAGES)


def agree(by_worker: Mapping[int, Check]) -> dict[int, Check]:
    """The `packages` checks with every worker whose versions differ from the most common
    set marked failed, naming both (jax/jaxlib/libtpu must be one build across a slice)."""
    seen = {i: v for i, c in by_worker.items() if (v := versions(c)) is not None}
    if len(set(seen.values())) <= 1:
        return dict(by_worker)
    common, _ = Counter(seen.values()).most_common(1)[0]
    majority = sorted(i for i, v in seen.items() if v == common)

    def text(v: tuple[str, ...]) -> str:
        return " ".join(f"{p}={x}" for p, x in zip(PACKAGES, v, strict=True))

    out = dict(by_worker)
    for i, v in seen.items():
        if v != common:
            out[i] = replace(by_worker[i], status="fail", detail=(
                f"{text(v)} here, {text(common)} on "
                f"{', '.join(f'w{j}' for j in majority[:8])}"))
    return out


@dataclass(frozen=True)
class DoctorReport:
    """This machine's checks, then (with a node) each worker's."""

    node: str | None
    local: tuple[Check, ...]
    workers: dict[int, tuple[Check, ...]] = field(default_factory=dict)
    # set when a local failure means the cloud side could not be asked (3: no such node;
    # 4: the API failed; 2: configuration)
    stopped: int | None = None

    def problems(self) -> list[tuple[int | None, Check]]:
        """(worker or None for this machine, check) for every failure, in order."""
        out: list[tuple[int | None, Check]] = [(None, c) for c in self.local if c.bad]
        for i in sorted(self.workers):
            out += [(i, c) for c in self.workers[i] if c.bad]
        return out

    def warnings(self) -> list[tuple[int | None, Check]]:
        out: list[tuple[int | None, Check]] = [(None, c) for c in self.local
                                               if c.status == "warn"]
        for i in sorted(self.workers):
            out += [(i, c) for c in self.workers[i] if c.status == "warn"]
        return out

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return self.stopped
        return int(ExitCode.FAILED) if self.problems() else int(ExitCode.OK)

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "healthy": not self.problems(),
            "local": [c.to_dict() for c in self.local],
            "workers": [{"worker": i, "checks": [c.to_dict() for c in self.workers[i]]}
                        for i in sorted(self.workers)],
            "problems": [{**c.to_dict(), "worker": i} for i, c in self.problems()],
            "exit_code": self.exit_code,
        }


def columns(rows: Iterable[Sequence[Check]]) -> list[str]:
    """Check names in first-seen order across workers (the matrix's columns)."""
    names: list[str] = []
    for row in rows:
        for c in row:
            if c.name not in names:
                names.append(c.name)
    return names
