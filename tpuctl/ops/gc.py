"""`gc`: find and delete leaked managed nodes (expired, preempted, terminated).

Never touches a node without `managed-by=tpuctl`; another owner's (or one without an owner
label) only with `--any-owner`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.errors import Declined
from tpuctl.model import EXPIRES_LABEL, Slice
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


@dataclass(frozen=True)
class GcResult:
    project: str
    zone: str
    candidates: tuple[Candidate, ...]
    not_yours: tuple[Candidate, ...]  # leaked too, but another owner's: left alone
    deleted: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"deleted": list(self.deleted),
                "candidates": [c.to_dict() for c in self.candidates],
                "not_yours": [c.to_dict() for c in self.not_yours]}


class GcEvents:
    def found(self, candidates: Sequence[Candidate], not_yours: Sequence[Candidate]) -> None:
        """What will be collected and what is left alone, before anything is deleted."""

    def confirm(self, candidates: Sequence[Candidate]) -> bool:
        """Asked when the request did not say `yes`: delete these?"""
        return False


def gc(ports: Ports, req: GcRequest, events: GcEvents | None = None) -> GcResult:
    events = events or GcEvents()
    cloud = ports.cloud
    found, others = candidates(cloud, any_owner=req.any_owner)
    events.found(found, others)
    deleted: list[str] = []
    if found:
        require_yes(req.yes, req.can_ask, f"delete {len(found)} node(s)",
                    "run `tpuctl gc --dry-run` to see them, `tpuctl gc --yes` to delete")
        if not req.yes and not events.confirm(found):
            raise Declined("nothing deleted", hint="nothing was changed")
        deleted = collect(ports, found)
    return GcResult(cloud.project, cloud.zone, tuple(found), tuple(others), tuple(deleted))


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
