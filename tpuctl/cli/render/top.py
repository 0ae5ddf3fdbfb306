"""`top`: one table per frame, redrawn in place on a terminal (rich Live), printed one after
another when piped, or one JSON document per line with `--json` (JSON Lines)."""

from __future__ import annotations

import json as jsonlib
import sys
from typing import Any

from tpuctl.cli import output
from tpuctl.cli.render.base import LiveView
from tpuctl.cli.render.cost import duration
from tpuctl.ops.top import TopFrame, TopResult
from tpuctl.ops.topframe import Group, WorkerTop

WORKER_HEADERS = ["WORKER", "RUN", "AGE", "BEAT", "CPU%", "RUN CPU%", "MEM", "LOAD",
                  "TPU DUTY% (per chip)", "HBM", "LAST LINE"]
GROUP_HEADERS = ["WORKERS", "WORST", "STATES", "BEAT max", "CPU% max", "RUN CPU% min",
                 "MEM max", "DUTY% min", "HBM max", "LAST LINE (worst)"]
LINE_CELL = 60


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f}"


def _num(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def _cut(text: str) -> str:
    return text if len(text) <= LINE_CELL else text[:LINE_CELL - 1] + "…"


def worker_row(w: WorkerTop) -> list[str]:
    if w.state in ("unreachable", "invalid"):
        return [f"w{w.index}", w.state, "-", "-", "-", "-", "-", "-", "-", "-",
                _cut(w.error or "")]
    duty = " ".join(_num(c.duty_pct) for c in w.chips) if w.chips else "-"
    hbm = w.hbm
    mem = "-" if w.mem_used is None or not w.mem_total else \
        f"{_gib(w.mem_used)}/{_gib(w.mem_total)}G"
    return [f"w{w.index}", w.state, "-" if w.run_age_s is None else duration(w.run_age_s),
            "-" if w.heartbeat_age is None else f"{w.heartbeat_age:.0f}s",
            _num(w.host_cpu_pct), _num(w.run_cpu_pct), mem, _num(w.load1, "{:.2f}"),
            duty, "-" if hbm is None else f"{_gib(hbm[0])}/{_gib(hbm[1])}G",
            _cut(w.last_line)]


def group_row(g: Group) -> list[str]:
    states = ", ".join(f"{n} {s}" for s, n in sorted(g.counts.items()))
    return [g.label, f"{g.state} (w{g.worst})", states,
            "-" if g.heartbeat_max is None else f"{g.heartbeat_max:.0f}s",
            _num(g.host_cpu_max), _num(g.run_cpu_min), _pct(g.mem_max_pct),
            _num(g.duty_min), _pct(g.hbm_max_pct), _cut(g.last_line)]


def header(f: TopFrame) -> str:
    price = "" if f.price is None else f"  {f.price.text()}" if f.price.amount is not None \
        else "  price unknown"
    absent = {w.tpu_reason for w in f.workers if w.tpu_source == "none" and w.tpu_reason}
    line = (f"{f.node} {f.accelerator_type} {f.node_state}  run {f.run_id}{price}  "
            f"frame {f.seq}")
    if absent:
        line += f"\nno TPU metrics: {sorted(absent)[0]}"
    return line


def rows(f: TopFrame) -> tuple[list[str], list[list[str]]]:
    if f.groups:
        return GROUP_HEADERS, [group_row(g) for g in f.groups]
    return WORKER_HEADERS, [worker_row(w) for w in f.workers]


class TopView(LiveView[TopResult]):
    """Draws each frame as it comes (`show`); `done` leaves the last one and names the
    workers that could not be read."""

    def __init__(self, *, json: bool = False, live: bool = True) -> None:
        super().__init__(json=json, live=live)

    def show(self, f: TopFrame) -> None:
        if self.json:  # one document per line: a stream of frames stays parseable
            sys.stdout.write(jsonlib.dumps(f.to_dict(), sort_keys=True) + "\n")
            sys.stdout.flush()
        elif self.redraw(lambda: _renderable(f)):
            return
        elif output.stdout_is_tty():  # --once on a terminal: rich, cells as plain Text
            from rich.console import Console

            Console().print(_renderable(f))
        else:
            if f.seq:
                output.out("")
            output.out(header(f))
            output.table(*rows(f))

    def done(self, result: TopResult) -> int:
        self.close()
        if result.last is not None:
            output.unreachable({w.index: w.error or "unreachable" for w in result.last.workers
                                if w.state == "unreachable"})
        return result.exit_code


def _renderable(f: TopFrame) -> Any:  # a rich renderable
    from rich.console import Group as RichGroup
    from rich.table import Table
    from rich.text import Text

    heads, body = rows(f)
    t = Table(*heads, show_edge=False, header_style="bold")
    for row in body:
        t.add_row(*(Text(c) for c in row))  # Text: worker output is never markup
    return RichGroup(Text(header(f)), t)
