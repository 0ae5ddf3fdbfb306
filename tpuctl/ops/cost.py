"""`tpuctl cost`: what each task's nodes cost over their lives, split into running, idle and
lost time, from the cost ledger (gone nodes) and the API (nodes still up), with totals.

Nodes still up are listed in every zone the ledger names (and the configured one); the runs of
this user's nodes that are up are read from their workers (worker 0), and what they say is
written to the ledger, so it stays countable after the node is deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tpuctl.errors import TpuctlError, UsageError
from tpuctl.model import Slice
from tpuctl.ops import costing
from tpuctl.ops.access import GONE_STATES
from tpuctl.ops.ledgernotes import cloud_id, learn_runs, note_node
from tpuctl.ops.ports import Ports

BY = ("task", "day")


@dataclass(frozen=True)
class CostRequest:
    since: str | None = None  # a duration (7d); None: everything in the ledger
    by: str = "task"
    read_workers: bool = True  # ask live nodes' workers for their runs


@dataclass(frozen=True)
class CostReport:
    cloud: str
    project: str
    since: float | None
    until: float
    by: str
    currency: str
    rows: tuple[costing.CostRow, ...]
    totals: costing.CostRow
    notes: tuple[str, ...] = ()  # what could not be known (zones not listed, runs unread)

    def to_dict(self) -> dict[str, object]:
        return {"cloud": self.cloud, "project": self.project, "since": self.since,
                "until": self.until, "by": self.by, "currency": self.currency,
                "rows": [{self.by: r.key, **r.to_dict()} for r in self.rows],
                "totals": self.totals.to_dict(), "notes": list(self.notes)}


def _price_of(atype: str, zone: str, spot: bool) -> tuple[float | None, str]:
    from tpuctl.prices import price_for

    p = price_for(atype, zone, spot)
    return p.amount, p.currency


def _live_nodes(ports: Ports, zones: set[str], named: set[str], notes: list[str]
                ) -> tuple[list[Slice], set[str]]:
    """Managed nodes up in these zones that are this user's (or in the ledger); the zones
    that could be listed."""
    from tpuctl.ops.owner import me

    mine = me(ports.cloud)
    live, listed = [], set()
    for zone in sorted(zones):
        try:
            nodes = ports.in_zone(zone).cloud.list_nodes()
        except TpuctlError as e:
            notes.append(f"{zone}: not listed ({e.message[:120]}); its nodes count until now")
            continue
        listed.add(zone)
        live += [sl for sl in nodes if sl.managed
                 and (sl.owner in (None, mine) or sl.name in named)]
    return live, listed


def cost(ports: Ports, req: CostRequest, now: float | None = None) -> CostReport:
    from tpuctl.naming import parse_duration

    if req.by not in BY:
        raise UsageError(f"invalid --by {req.by!r}", hint="use task or day")
    since = parse_duration(req.since) if req.since else None
    now = time.time() if now is None else now
    lo = 0.0 if since is None else now - since
    cloud = ports.cloud
    notes: list[str] = []
    here = cloud_id(cloud)

    def events() -> list:
        return [e for e in ports.ledger.read()
                if e.cloud == here and e.project == cloud.project]

    found = events()
    zones = {cloud.zone} | {e.zone for e in found}
    live, listed = _live_nodes(ports, zones, {e.node for e in found}, notes)
    seen_gone = {(e.zone, e.node, e.created) for e in found if e.kind == "preempted"}
    for sl in live:
        if sl.state in GONE_STATES and (sl.zone, sl.name, sl.create_time) not in seen_gone:
            note_node(ports, "preempted", sl)
    if req.read_workers:
        from tpuctl.ops.owner import me
        from tpuctl.ops.runspans import read_spans

        mine = me(cloud)
        by_zone: dict[str, list[Slice]] = {}
        for sl in live:
            if sl.state == "READY" and sl.owner in (None, mine):
                by_zone.setdefault(sl.zone, []).append(sl)
        for zone, nodes in sorted(by_zone.items()):
            there = ports.in_zone(zone)
            answers = read_spans(there, nodes)
            for sl in nodes:
                got = answers.get(sl.name, "not asked")
                if isinstance(got, str):
                    notes.append(f"{sl.name}: runs not read from its workers ({got}); "
                                 "the ledger's are used")
                else:
                    learn_runs(there, sl, ((s.run, s.start, s.end) for s in got))
        found = events()
    tried = costing.attempts(found, live, now, listed, _price_of)
    rows = costing.rows(tried, now, lo, now, req.by)
    currency = next((a.currency for a in tried if a.currency), "") or _price_of(
        "v6e-8", cloud.zone, False)[1]
    if any(r.unpriced_s for r in rows):
        notes.append("some time has no price (unknown type or region): not in the costs; "
                     "see `unpriced_s`, and docs/commands.md#prices to add one")
    return CostReport(cloud=here, project=cloud.project, since=None if since is None else lo,
                      until=now, by=req.by, currency=currency, rows=tuple(rows),
                      totals=costing.total(rows), notes=tuple(notes))
