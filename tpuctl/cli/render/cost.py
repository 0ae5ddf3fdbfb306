"""`cost`, and the price and duration strings other views share (create, list, describe,
up's reminder)."""

from __future__ import annotations

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.ops.cost import CostReport
from tpuctl.ops.costing import CostRow
from tpuctl.prices import Price, money


def duration(seconds: float) -> str:
    """45s, 12m, 3h05m, 2d04h: short enough for a table cell."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def price_line(p: Price, prefix: str = "estimated cost: ") -> str:
    kind = "spot" if p.spot else "on-demand"
    if p.amount is None:
        return f"{prefix}unknown ({p.unknown})"
    return (f"{prefix}{p.text()} ({p.chips} chips × {money(p.per_chip or 0.0, p.currency)} "
            f"per chip-hour, {kind} in {p.region}; {p.source})")


def _cost(row: CostRow, attr: str, currency: str) -> str:
    if row.unpriced_s >= row.total_s > 0:
        return "unknown"
    return money(getattr(row, attr), currency)


class CostView(View[CostReport]):
    def text(self, report: CostReport) -> None:
        for note in report.notes:
            output.info(f"note: {note}")
        if not report.rows:
            output.info(f"no task in the ledger for {report.project}"
                        + (" in that time" if report.since else "")
                        + " (tpuctl records nodes as they are created and deleted)")
            return
        cur = report.currency
        head = "TASK" if report.by == "task" else "DAY (UTC)"
        rows = [[r.key, duration(r.running_s), duration(r.idle_s), duration(r.lost_s),
                 _cost(r, "running_cost", cur), _cost(r, "idle_cost", cur),
                 _cost(r, "lost_cost", cur), _cost(r, "total_cost", cur)]
                for r in (*report.rows, report.totals)]
        output.table([head, "RUNNING", "IDLE", "LOST", "RUNNING COST", "IDLE COST",
                      "LOST COST", "TOTAL"], rows)
