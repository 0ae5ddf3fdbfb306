"""The arithmetic of `tpuctl cost`, on plain data (ledger events, the nodes the API lists, run
spans): each node's life split into running, idle and lost time, priced, by task or by day.

- An *attempt* is one incarnation of a task's node (name + createTime): from its createTime to
  the first delete or preemption recorded, or to now while it is up.
- *running*: time a run was live on an attempt that was not preempted; *lost*: time a run was
  live on an attempt that ended preempted (the work a preemption threw away, checkpoints
  aside); *idle*: the rest of the attempt's life (up, no run).
- Runs are intervals [start, end); several runs at once count once. A run whose end is unknown
  lasts until its attempt ends (or now).

Approximations (docs/commands.md#cost): billing starts at createTime (GCP bills READY time,
a few minutes later); a preemption counts from when tpuctl first saw it; a node deleted where
tpuctl did not see it ends at the last event recorded for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tpuctl.ledger import LedgerEvent
from tpuctl.model import Slice
from tpuctl.ops.access import GONE_STATES
from tpuctl.ops.runspans import iso_seconds

PriceOf = Callable[[str, str, bool], "tuple[float | None, str]"]  # type, zone, spot → (h, cur)
NODE_KINDS = ("create", "delete", "preempted")
DAY = 86400.0


@dataclass(frozen=True)
class Attempt:
    zone: str
    node: str
    created: str
    start: float
    end: float | None  # None: still up (counted to now)
    preempted: bool = False
    accelerator_type: str = ""
    spot: bool = False
    price: float | None = None  # per hour; None: unknown
    currency: str = ""
    runs: tuple[tuple[str, float, float | None], ...] = ()
    end_known: bool = True  # False: gone without a recorded delete (or its zone not listed)

    def life_end(self, now: float) -> float:
        return now if self.end is None else self.end


def _union(spans: Iterable[tuple[float, float]]) -> float:
    total, hi = 0.0, float("-inf")
    for s, e in sorted(spans):
        if e <= hi:
            continue
        total += e - max(s, hi)
        hi = e
    return total


def split(a: Attempt, now: float, lo: float, hi: float) -> tuple[float, float, float]:
    """(running, idle, lost) seconds of the attempt inside [lo, hi)."""
    start, end = max(a.start, lo), min(a.life_end(now), hi)
    if end <= start:
        return 0.0, 0.0, 0.0
    busy = _union((max(s, start), min(a.life_end(now) if e is None else e, end))
                  for _, s, e in a.runs
                  if min(a.life_end(now) if e is None else e, end) > max(s, start))
    busy = min(busy, end - start)
    idle = end - start - busy
    return (0.0, idle, busy) if a.preempted else (busy, idle, 0.0)


@dataclass
class CostRow:
    key: str  # the task (node name), a day (YYYY-MM-DD), or "total"
    running_s: float = 0.0
    idle_s: float = 0.0
    lost_s: float = 0.0
    running_cost: float = 0.0
    idle_cost: float = 0.0
    lost_cost: float = 0.0
    unpriced_s: float = 0.0  # time of attempts whose price is unknown (not in the costs)
    attempts: int = 0
    up: bool = False  # a node of it is up now
    types: set[str] = field(default_factory=set)

    @property
    def total_s(self) -> float:
        return self.running_s + self.idle_s + self.lost_s

    @property
    def total_cost(self) -> float:
        return self.running_cost + self.idle_cost + self.lost_cost

    def add(self, a: Attempt, parts: tuple[float, float, float]) -> None:
        run, idle, lost = parts
        if run + idle + lost <= 0:
            return
        self.attempts += 1
        self.up = self.up or a.end is None
        if a.accelerator_type:
            self.types.add(a.accelerator_type)
        self.running_s += run
        self.idle_s += idle
        self.lost_s += lost
        if a.price is None:
            self.unpriced_s += run + idle + lost
            return
        self.running_cost += a.price * run / 3600
        self.idle_cost += a.price * idle / 3600
        self.lost_cost += a.price * lost / 3600

    def merge(self, other: CostRow) -> None:
        for name in ("running_s", "idle_s", "lost_s", "running_cost", "idle_cost",
                     "lost_cost", "unpriced_s", "attempts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.up = self.up or other.up
        self.types |= other.types

    def to_dict(self) -> dict[str, object]:
        """Rounded as printed (seconds to the ms, money to 1e-6); each total is the sum of its
        rounded parts, so the parts add up to it in the JSON too."""
        secs = [round(v, 3) for v in (self.running_s, self.idle_s, self.lost_s)]
        money = [round(v, 6) for v in (self.running_cost, self.idle_cost, self.lost_cost)]
        return {"running_s": secs[0], "idle_s": secs[1], "lost_s": secs[2],
                "total_s": round(sum(secs), 3),
                "running_cost": money[0], "idle_cost": money[1], "lost_cost": money[2],
                "total_cost": round(sum(money), 6),
                "unpriced_s": round(self.unpriced_s, 3), "attempts": self.attempts,
                "up": self.up, "types": sorted(self.types)}


def _runs_by_node(events: Sequence[LedgerEvent]
                  ) -> dict[tuple[str, str], dict[str, list[float | None]]]:
    """(zone, node) → run id → [first start, first recorded end or None]."""
    out: dict[tuple[str, str], dict[str, list[float | None]]] = {}
    for e in sorted(events, key=lambda e: e.t):
        if e.kind not in ("run_start", "run_end"):
            continue
        span = out.setdefault((e.zone, e.node), {}).setdefault(e.run, [None, None])
        i = 0 if e.kind == "run_start" else 1
        span[i] = e.t if span[i] is None else min(e.t, span[i])  # type: ignore[type-var]
    return out


def attempts(events: Sequence[LedgerEvent], live: Sequence[Slice], now: float,
             listed_zones: Iterable[str], price_of: PriceOf) -> list[Attempt]:
    """Every attempt the ledger and the API know of, with its runs and price."""
    listed = set(listed_zones)
    by_key: dict[tuple[str, str, str], list[LedgerEvent]] = {}
    for e in events:
        if e.kind in NODE_KINDS:
            by_key.setdefault((e.zone, e.node, e.created), []).append(e)
    up = {(sl.zone, sl.name, sl.create_time): sl for sl in live}
    for key in up:
        by_key.setdefault(key, [])
    runs = _runs_by_node(events)
    last_seen: dict[tuple[str, str], float] = {}
    for e in events:
        last_seen[(e.zone, e.node)] = max(e.t, last_seen.get((e.zone, e.node), e.t))
    out: list[Attempt] = []
    for (zone, node, created), evs in by_key.items():
        sl = up.get((zone, node, created))
        start = iso_seconds(created) or min((e.t for e in evs), default=now)
        ends = [e.t for e in evs if e.kind in ("delete", "preempted")]
        preempted = any(e.kind == "preempted" for e in evs)
        end: float | None = min(ends) if ends else None
        end_known = True
        if sl is not None and sl.state in GONE_STATES:
            preempted = True
            end = end if end is not None else now
        elif end is None and sl is None:
            end_known = False
            if zone in listed:  # gone, and tpuctl did not see it go
                end = max(last_seen.get((zone, node), start), start)
        atype = (sl.accelerator_type if sl else "") or next(
            (e.accelerator_type for e in evs if e.accelerator_type), "")
        spot = sl.spot if sl else any(e.spot for e in evs)
        recorded = [e for e in sorted(evs, key=lambda e: (e.kind != "create", e.t))
                    if e.price is not None]
        if recorded:
            price, currency = recorded[0].price, recorded[0].currency
        else:
            price, currency = price_of(atype, zone, spot) if atype else (None, "")
        out.append(Attempt(zone=zone, node=node, created=created, start=start, end=end,
                           preempted=preempted, accelerator_type=atype, spot=spot,
                           price=price, currency=currency, end_known=end_known))
    out.sort(key=lambda a: (a.zone, a.node, a.start))
    # each run belongs to the node's latest attempt that started before it did
    final = []
    for a in out:
        mine: list[tuple[str, float, float | None]] = []
        siblings = [b for b in out if (b.zone, b.node) == (a.zone, a.node)]
        for run, (began, ended) in runs.get((a.zone, a.node), {}).items():
            if began is None:
                continue
            owner = max((b for b in siblings if b.start <= began + 1),
                        key=lambda b: b.start, default=None)
            if owner is a:
                mine.append((run, began, ended))
        final.append(dataclasses.replace(a, runs=tuple(sorted(mine, key=lambda r: r[1]))))
    return final


def day_of(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def rows(found: Sequence[Attempt], now: float, lo: float, hi: float, by: str
         ) -> list[CostRow]:
    """By task (node name) or by UTC day, within [lo, hi); rows with no time are left out."""
    table: dict[str, CostRow] = {}
    for a in found:
        if by == "task":
            table.setdefault(a.node, CostRow(a.node)).add(a, split(a, now, lo, hi))
            continue
        start = max(a.start, lo)
        day_lo = dt.datetime.fromtimestamp(start, dt.timezone.utc).replace(
            hour=0, minute=0, second=0, microsecond=0).timestamp()
        while day_lo < min(a.life_end(now), hi):
            key = day_of(day_lo)
            table.setdefault(key, CostRow(key)).add(
                a, split(a, now, max(lo, day_lo), min(hi, day_lo + DAY)))
            day_lo += DAY
    return [table[k] for k in sorted(table) if table[k].total_s > 0]


def total(found: Sequence[CostRow]) -> CostRow:
    t = CostRow("total")
    for r in found:
        t.merge(r)
    return t
