"""Lines for the cost ledger (tpuctl/ledger.py), written where the operations see things
happen: a node made (`create`), deleted (`delete`, `down`, `gc`, a recreate) or found
preempted; a run started (`launch`) and seen ended (`tail`, `status`, `stop`, `top`, `cost`).

Writing never fails a command (the ledger port swallows its errors), and nothing here
decides anything: `ops/costing.py` reads the lines back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tpuctl.cloud.base import Cloud
from tpuctl.ledger import GCP, LedgerEvent
from tpuctl.model import Slice
from tpuctl.ops.ports import Ports


def cloud_id(cloud: Cloud) -> str:
    """Which cloud an event belongs to: the emulator's endpoint, or Google Cloud."""
    return cloud.endpoint or GCP


def node_event(cloud: Cloud, kind: str, sl: Slice, *, t: float | None = None,
               run: str = "", with_price: bool = False) -> LedgerEvent:
    price, currency, source = None, "", ""
    if with_price and sl.accelerator_type:
        from tpuctl.prices import price_for

        p = price_for(sl.accelerator_type, sl.zone or cloud.zone, sl.spot)
        price, currency, source = p.amount, p.currency, p.source
    return LedgerEvent(kind=kind, t=time.time() if t is None else t, cloud=cloud_id(cloud),
                       project=cloud.project, zone=sl.zone or cloud.zone, node=sl.name,
                       created=sl.create_time, accelerator_type=sl.accelerator_type,
                       spot=sl.spot, price=price, currency=currency, price_source=source,
                       run=run)


def note_node(ports: Ports, kind: str, sl: Slice) -> None:
    """create, delete or preempted, with the node's type, spot flag and price now."""
    try:
        ports.ledger.record(node_event(ports.cloud, kind, sl, with_price=True))
    except Exception:  # pricing or a strange Slice must never fail the command
        pass


def note_run(ports: Ports, kind: str, sl: Slice, run_id: str, t: float | None = None
             ) -> None:
    """run_start or run_end of `run_id` on the node (`t`: when, if not now)."""
    if run_id in ("", "-"):
        return
    ports.ledger.record(node_event(ports.cloud, kind, sl, t=t, run=run_id))


def known_runs(ports: Ports, sl: Slice) -> tuple[set[str], set[str]]:
    """(run ids with a recorded start, run ids with a recorded end) of this node."""
    me = cloud_id(ports.cloud)
    started: set[str] = set()
    ended: set[str] = set()
    for e in ports.ledger.read():
        if (e.cloud, e.project, e.zone, e.node) == (me, ports.cloud.project,
                                                    sl.zone or ports.cloud.zone, sl.name):
            (started if e.kind == "run_start" else ended if e.kind == "run_end" else set()
             ).add(e.run)
    return started, ended


def learn_runs(ports: Ports, sl: Slice, spans: Iterable[tuple[str, float, float | None]]
               ) -> None:
    """Record what the workers said about runs the ledger does not know (started elsewhere,
    or ended while nobody watched), so they still count once the node is gone."""
    started, ended = known_runs(ports, sl)
    for run, start, end in spans:
        if run not in started:
            note_run(ports, "run_start", sl, run, t=start)
        if end is not None and run not in ended:
            note_run(ports, "run_end", sl, run, t=end)


def note_run_end(ports: Ports, sl: Slice, run_id: str, t: float | None = None) -> None:
    """run_end, once per run (status is asked again and again)."""
    if run_id in ("", "-") or "," in run_id:
        return
    if run_id not in known_runs(ports, sl)[1]:
        note_run(ports, "run_end", sl, run_id, t)
