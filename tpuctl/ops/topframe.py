"""One frame of `tpuctl top`: what top.sh printed on each worker, turned into a row per worker
(rates from two rounds of counters), and rows grouped for large nodes (the worst values of
each group of workers). Pure: tests feed it text.

Worker output is untrusted: numbers are parsed or absent, never guessed, and the log line
loses every terminal escape sequence and control character before anyone prints it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tpuctl.errors import TpuctlError
from tpuctl.ops.runspans import iso_seconds
from tpuctl.ops.session import parse_kv, worker_run_id

HEARTBEAT_STALE_S = 30  # as `status` says it (ops/runs.py): a live run this quiet is hung
LINE_MAX = 200
GROUP_OVER = 16  # nodes with more workers than this are shown a group of workers per row
GROUP_SIZE = 8
# the worst first: what a group's row shows
STATE_RANK = ("invalid", "unreachable", "dead", "hung", "failed", "missing", "stopped",
              "exited", "running")

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # any other escape, lone ESC included
    r"|\x9b[0-?]*[ -/]*[@-~]"  # CSI as one (C1) byte
    r"|[\x80-\x9f]")  # the other C1 controls


def clean_line(text: str, width: int = LINE_MAX) -> str:
    """A worker's log line made safe to print: escapes and control characters removed
    (tabs become spaces), at most `width` characters (… when cut)."""
    text = _ESCAPES.sub("", text.replace("\t", " "))
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= width else text[:width - 1] + "…"


def _num(kv: dict[str, str], key: str) -> float | None:
    try:
        value = float(kv[key])
    except (KeyError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


@dataclass(frozen=True)
class Chip:
    index: int
    duty_pct: float | None = None
    hbm_used: int | None = None
    hbm_total: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"chip": self.index, "duty_pct": self.duty_pct, "hbm_used": self.hbm_used,
                "hbm_total": self.hbm_total}


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one round, for the next round's rates."""

    now: float
    cpu_busy: float
    cpu_total: float
    run_ticks: float | None
    clk_tck: float
    run_id: str


@dataclass(frozen=True)
class WorkerTop:
    index: int
    state: str  # running, hung, exited, stopped, failed, dead, missing, unreachable
    run_id: str = "-"
    run_age_s: float | None = None
    heartbeat_age: float | None = None
    exit_code: int | None = None
    host_cpu_pct: float | None = None
    run_cpu_pct: float | None = None  # of one core, like top: may exceed 100
    mem_used: int | None = None  # bytes
    mem_total: int | None = None
    load1: float | None = None
    tpu_source: str = "-"  # libtpu, none
    tpu_reason: str | None = None  # why there are no TPU metrics
    chips: tuple[Chip, ...] = ()
    last_line: str = ""
    error: str | None = None  # why it could not be read

    @property
    def duty_min(self) -> float | None:
        duty = [c.duty_pct for c in self.chips if c.duty_pct is not None]
        return min(duty) if duty else None

    @property
    def hbm(self) -> tuple[int, int] | None:
        used = [c.hbm_used for c in self.chips if c.hbm_used is not None]
        total = [c.hbm_total for c in self.chips if c.hbm_total is not None]
        return (sum(used), sum(total)) if used and total else None

    def to_dict(self) -> dict[str, object]:
        return {"worker": self.index, "state": self.state, "run_id": self.run_id,
                "run_age_s": self.run_age_s, "heartbeat_age_s": self.heartbeat_age,
                "exit_code": self.exit_code, "host_cpu_pct": self.host_cpu_pct,
                "run_cpu_pct": self.run_cpu_pct, "mem_used": self.mem_used,
                "mem_total": self.mem_total, "load1": self.load1,
                "tpu": {"source": self.tpu_source, "reason": self.tpu_reason,
                        "chips": [c.to_dict() for c in self.chips]},
                "last_line": self.last_line, "error": self.error}


def _chips(lines: Sequence[str]) -> tuple[Chip, ...]:
    duty: dict[int, float] = {}
    hbm: dict[int, tuple[int, int]] = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        kv = parse_kv(rest)
        i = _num(kv, "i")
        if i is None or i < 0:
            continue
        if kind == "duty" and (pct := _num(kv, "pct")) is not None:
            duty[int(i)] = max(0.0, min(100.0, pct))
        elif kind == "hbm" and (u := _num(kv, "used")) is not None \
                and (t := _num(kv, "total")) is not None:
            hbm[int(i)] = (int(u), int(t))
    if duty and sorted(duty) == list(range(len(duty))) \
            and sorted(hbm) == list(range(2 * len(duty))):  # two devices per chip: v2, v3
        hbm = {c: (hbm.get(2 * c, (0, 0))[0] + hbm.get(2 * c + 1, (0, 0))[0],
                   hbm.get(2 * c, (0, 0))[1] + hbm.get(2 * c + 1, (0, 0))[1]) for c in duty}
    return tuple(Chip(c, duty.get(c), *(hbm[c] if c in hbm else (None, None)))
                 for c in sorted(set(duty) | set(hbm)))


def parse_worker(index: int, text: str, prev: Counters | None
                 ) -> tuple[WorkerTop, Counters | None]:
    """A worker's row from top.sh's output, with rates against the previous round's."""
    sections: dict[str, str] = {}
    chip_lines, log = [], ""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "log":
            log = rest
        elif kind in ("duty", "hbm"):
            chip_lines.append(line)
        elif kind in ("run", "host", "tpu"):
            sections[kind] = rest
    run, host, tpu = (parse_kv(sections.get(k, "")) for k in ("run", "host", "tpu"))
    try:
        run_id = worker_run_id(index, run.get("run"))
    except TpuctlError as e:  # a worker that says anything is shown saying so
        return WorkerTop(index=index, state="invalid", error=clean_line(e.message)), None
    state = run.get("state", "missing")
    beat = _num(run, "heartbeat_age")
    code = _num(run, "exit_code")
    if state == "running" and beat is not None and beat > HEARTBEAT_STALE_S:
        state = "hung"
    elif state == "exited" and run.get("stopped") == "1":
        state = "stopped"
    elif state == "exited" and code not in (None, 0):
        state = "failed"
    now = _num(host, "now")
    started = iso_seconds(run.get("started_at"))
    counters = None
    cpu, run_cpu = _num(host, "cpu_pct"), _num(host, "run_cpu_pct")
    busy, total, hz = _num(host, "cpu_busy"), _num(host, "cpu_total"), _num(host, "clk_tck")
    if now is not None and busy is not None and total is not None and hz:
        counters = Counters(now, busy, total, _num(host, "run_ticks"), hz, run_id)
        if prev is not None and total > prev.cpu_total:
            cpu = 100 * (busy - prev.cpu_busy) / (total - prev.cpu_total)
            run_cpu = None
            if (prev.run_id == run_id and counters.run_ticks is not None
                    and prev.run_ticks is not None and now > prev.now):
                run_cpu = max(0.0, 100 * (counters.run_ticks - prev.run_ticks) / hz
                              / (now - prev.now))
    mem_total, mem_avail = _num(host, "mem_total_kb"), _num(host, "mem_avail_kb")
    reason = sections.get("tpu", "").partition("reason=")[2].strip() or None
    row = WorkerTop(
        index=index, state=state, run_id=run_id,
        run_age_s=None if started is None or now is None else max(0.0, now - started),
        heartbeat_age=beat if state in ("running", "hung") else None,
        exit_code=None if code is None else int(code),
        host_cpu_pct=None if cpu is None else round(max(0.0, min(100.0, cpu)), 1),
        run_cpu_pct=None if run_cpu is None else round(max(0.0, run_cpu), 1),
        mem_used=None if not mem_total or mem_avail is None
        else int((mem_total - mem_avail) * 1024),
        mem_total=None if not mem_total else int(mem_total * 1024),
        load1=_num(host, "load1"),
        tpu_source=tpu.get("source", "-"),
        tpu_reason=None if reason is None else clean_line(reason),
        chips=_chips(chip_lines) if tpu.get("source") == "libtpu" else (),
        last_line=clean_line(log))
    return row, counters


def unreachable(index: int, why: str) -> WorkerTop:
    return WorkerTop(index=index, state="unreachable", error=clean_line(why))


@dataclass(frozen=True)
class Group:
    """A row for several workers of a large node: each value is the worst of theirs (the
    lowest duty cycle, the highest memory, CPU and heartbeat age, the worst state). `slice`
    is the slice's index in a multislice group (None: a single slice)."""

    workers: tuple[int, ...]
    state: str
    counts: dict[str, int] = field(default_factory=dict)  # state → workers
    slice: int | None = None
    duty_min: float | None = None
    hbm_max_pct: float | None = None
    host_cpu_max: float | None = None
    run_cpu_min: float | None = None
    heartbeat_max: float | None = None
    mem_max_pct: float | None = None
    worst: int | None = None  # the worker whose state the row shows
    last_line: str = ""

    @property
    def label(self) -> str:
        ws = f"w{self.workers[0]}-{self.workers[-1]}"
        return ws if self.slice is None else f"s{self.slice}:{ws}"

    def to_dict(self) -> dict[str, object]:
        return {"workers": list(self.workers), "slice": self.slice, "state": self.state,
                "counts": self.counts, "duty_min_pct": self.duty_min,
                "hbm_max_pct": self.hbm_max_pct, "host_cpu_max_pct": self.host_cpu_max,
                "run_cpu_min_pct": self.run_cpu_min, "heartbeat_max_s": self.heartbeat_max,
                "mem_max_pct": self.mem_max_pct, "worst": self.worst,
                "last_line": self.last_line}


def _pct(used_total: tuple[int, int] | None) -> float | None:
    return None if not used_total or not used_total[1] else 100 * used_total[0] / used_total[1]


def _max(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return max(got) if got else None


def _min(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return min(got) if got else None


def group(workers: Sequence[WorkerTop], size: int = GROUP_SIZE, slice_: int | None = None
          ) -> list[Group]:
    """Consecutive workers `size` at a time, each group summarised by its worst values."""
    out = []
    for start in range(0, len(workers), size):
        part = workers[start:start + size]
        worst = min(part, key=lambda w: (STATE_RANK.index(w.state)
                                         if w.state in STATE_RANK else 0, w.index))
        counts: dict[str, int] = {}
        for w in part:
            counts[w.state] = counts.get(w.state, 0) + 1
        out.append(Group(
            workers=tuple(w.index for w in part), state=worst.state, counts=counts,
            slice=slice_, duty_min=_min([w.duty_min for w in part]),
            hbm_max_pct=_max([_pct(w.hbm) for w in part]),
            host_cpu_max=_max([w.host_cpu_pct for w in part]),
            run_cpu_min=_min([w.run_cpu_pct for w in part]),
            heartbeat_max=_max([w.heartbeat_age for w in part]),
            mem_max_pct=_max([_pct((w.mem_used, w.mem_total)) if w.mem_used is not None
                              and w.mem_total else None for w in part]),
            worst=worst.index, last_line=worst.last_line or worst.error or ""))
    return out
