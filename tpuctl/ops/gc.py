"""`gc`: find and delete leaked managed nodes (expired, preempted, terminated).

Never touches a node without `managed-by=tpuctl`; another owner's (or one without an owner
label) only with `--any-owner`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.model import EXPIRES_LABEL, Slice
from tpuctl.ops.access import GONE_STATES
from tpuctl.ops.nodes import start_delete
from tpuctl.ops.owner import me


@dataclass(frozen=True)
class Candidate:
    node: Slice
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.node.name, "state": self.node.state, "reason": self.reason}


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


def collect(cloud: Cloud, found: list[Candidate], *, timeout: float = 900.0) -> list[str]:
    """Delete every candidate (all requests first, then wait), returning the names."""
    ops = [start_delete(cloud, c.node) for c in found]
    for op in ops:
        cloud.wait_operation(op, timeout=timeout)
    return [c.node.name for c in found]
