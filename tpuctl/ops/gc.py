"""`gc`: find and delete leaked managed nodes (expired, preempted, terminated).

Never touches a node without `managed-by=tpuctl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.model import EXPIRES_LABEL, Slice
from tpuctl.ops.access import GONE_STATES
from tpuctl.ops.nodes import start_delete


@dataclass(frozen=True)
class Candidate:
    node: Slice
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.node.name, "state": self.node.state, "reason": self.reason}


def candidates(cloud: Cloud, now: float | None = None) -> list[Candidate]:
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
    return sorted(out, key=lambda c: c.node.name)


def collect(cloud: Cloud, found: list[Candidate], *, timeout: float = 900.0) -> list[str]:
    """Delete every candidate (all requests first, then wait), returning the names."""
    ops = [start_delete(cloud, c.node) for c in found]
    for op in ops:
        cloud.wait_operation(op, timeout=timeout)
    return [c.node.name for c in found]
