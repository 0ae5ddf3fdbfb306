"""`gc`: find and delete leaked managed nodes (expired, preempted, terminated) and, with
`--idle 2h`, nodes that have been up without a run for longer than that.

Never touches a node without `managed-by=tpuctl`; another owner's (or one without an owner
label) only with `--any-owner`. An idle node is deleted only when every one of its workers
answered that no run is live there (ops/idle.py); busy nodes and nodes whose workers do not
all answer are kept, and said so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.errors import Declined
from tpuctl.model import EXPIRES_LABEL, Slice
from tpuctl.naming import parse_duration
from tpuctl.ops.access import GONE_STATES
from tpuctl.ops.nodes import require_yes, start_delete
from tpuctl.ops.owner import me
from tpuctl.ops.ports import Ports


@dataclass(frozen=True)
class Candidate:
    node: Slice
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.node.name, "state": self.node.state, "reason": self.reason}


@dataclass(frozen=True)
class GcRequest:
    any_owner: bool = False
    yes: bool = False
    can_ask: bool = False
    idle: str | None = None  # a duration: also collect nodes idle (no run) longer than this


@dataclass(frozen=True)
class GcResult:
    project: str
    zone: str
    candidates: tuple[Candidate, ...]
    not_yours: tuple[Candidate, ...]  # leaked too, but another owner's: left alone
    deleted: tuple[str, ...]
    kept: tuple[Candidate, ...] = ()  # old enough for --idle, but busy or not answering

    def to_dict(self) -> dict[str, object]:
        return {"deleted": list(self.deleted),
                "candidates": [c.to_dict() for c in self.candidates],
                "not_yours": [c.to_dict() for c in self.not_yours],
                "kept": [c.to_dict() for c in self.kept]}


class GcEvents:
    def found(self, candidates: Sequence[Candidate], not_yours: Sequence[Candidate]) -> None:
        """What will be collected and what is left alone, before anything is deleted."""

    def kept(self, kept: Sequence[Candidate]) -> None:
        """Nodes `--idle` looked at and keeps (a run is live, or the workers did not say)."""

    def confirm(self, candidates: Sequence[Candidate]) -> bool:
        """Asked when the request did not say `yes`: delete these?"""
        return False


def gc(ports: Ports, req: GcRequest, events: GcEvents | None = None) -> GcResult:
    events = events or GcEvents()
    threshold = parse_duration(req.idle) if req.idle is not None else None  # before any call
    cloud = ports.cloud
    found, others = candidates(cloud, any_owner=req.any_owner)
    kept: list[Candidate] = []
    if threshold is not None:
        idle, kept = idle_candidates(ports, threshold, found, any_owner=req.any_owner)
        found = sorted([*found, *idle], key=lambda c: c.node.name)
        events.kept(kept)
    events.found(found, others)
    deleted: list[str] = []
    if found:
        require_yes(req.yes, req.can_ask, f"delete {len(found)} node(s)",
                    "run `tpuctl gc --dry-run` to see them, `tpuctl gc --yes` to delete")
        if not req.yes and not events.confirm(found):
            raise Declined("nothing deleted", hint="nothing was changed")
        deleted = collect(ports, found)
    return GcResult(cloud.project, cloud.zone, tuple(found), tuple(others), tuple(deleted),
                    tuple(kept))


def idle_candidates(ports: Ports, threshold: float, already: Sequence[Candidate], *,
                    any_owner: bool = False, now: float | None = None
                    ) -> tuple[list[Candidate], list[Candidate]]:
    """(READY managed nodes of the caller idle longer than `threshold`, those old enough but
    kept: busy, or their workers did not all answer). Unmanaged nodes are never looked at."""
    from tpuctl.ops.idle import assess, node_start

    now = time.time() if now is None else now
    mine = me(ports.cloud)
    taken = {c.node.name for c in already}
    nodes = [n for n in ports.cloud.list_nodes()
             if n.managed and n.state == "READY" and n.name not in taken
             and (any_owner or n.owner == mine) and now - node_start(n, now) > threshold]
    verdicts = assess(ports, nodes, now, older_than=threshold, ask="always")
    out, kept = [], []
    for n in nodes:
        v = verdicts[n.name]
        if v.state == "idle" and v.idle_for(now) > threshold:
            out.append(Candidate(n, f"idle {_minutes(v.idle_for(now))} (--idle)"))
        elif v.state == "busy":
            kept.append(Candidate(n, f"busy: run {v.run} is live"))
        elif v.state == "unknown":
            kept.append(Candidate(n, f"kept: {v.how}"))
    return out, kept


def _minutes(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m} min"


def candidates(cloud: Cloud, now: float | None = None, *, any_owner: bool = False
               ) -> tuple[list[Candidate], list[Candidate]]:
    """(what to collect, leaked nodes left alone because they are not the caller's)."""
    now = time.time() if now is None else now
    out = []
    for n in cloud.list_nodes():
        if not n.managed:
            continue
        if n.state in GONE_STATES:
            out.append(Candidate(n, f"{n.state.lower()}"))
            continue
        expires = n.labels.get(EXPIRES_LABEL, "")
        if expires.isdigit() and int(expires) <= now:
            ago = int(now - int(expires))
            out.append(Candidate(n, f"expired {ago // 60} min ago (--ttl)"))
    out.sort(key=lambda c: c.node.name)
    if any_owner or not out:
        return out, []
    mine = me(cloud)
    return ([c for c in out if c.node.owner == mine],
            [c for c in out if c.node.owner != mine])


def collect(ports: Ports, found: Sequence[Candidate], *, timeout: float = 900.0
            ) -> list[str]:
    """Delete every candidate (all requests first, then wait), returning the names."""
    ops = [start_delete(ports, c.node) for c in found]
    for op in ops:
        ports.cloud.wait_operation(op, timeout=timeout)
    return [c.node.name for c in found]
