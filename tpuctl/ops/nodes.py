"""`list`, `describe`, `delete`: the read and remove side of the control plane."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.cloud.base import Cloud
from tpuctl.model import Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops import worker_cache


def list_nodes(cloud: Cloud, *, include_unmanaged: bool = False) -> list[Slice]:
    nodes = cloud.list_nodes()
    if not include_unmanaged:
        nodes = [n for n in nodes if n.managed]
    return sorted(nodes, key=lambda n: n.name)


def describe(cloud: Cloud, name: str) -> Slice:
    validate_node_name(name)
    return cloud.get_node(name)


@dataclass(frozen=True)
class DeleteResult:
    name: str
    deleted: bool
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "deleted": self.deleted, "seconds": round(self.seconds, 2)}


def check_deletable(cloud: Cloud, name: str, *, any_owner: bool = False) -> Slice:
    """Only managed nodes may be deleted, and only the caller's own unless `any_owner`:
    tpuctl never touches what it does not own."""
    from tpuctl.ops.owner import check_ours

    validate_node_name(name)
    sl = cloud.get_node(name)
    check_ours(cloud, sl, doing="delete", any_owner=any_owner)
    return sl


def start_delete(cloud: Cloud, sl: Slice) -> str:
    """The delete operation for a node: through its queued resource when one owns it (GCP
    refuses deleting such a node directly), else the node itself."""
    worker_cache.forget(cloud, sl.name)
    if sl.queued_resource:
        return cloud.delete_queued_resource(sl.queued_resource.rsplit("/", 1)[-1])
    return cloud.delete_node(sl.name)


def delete(cloud: Cloud, sl: Slice, *, wait: bool = True, timeout: float = 900.0,
           on_poll: Callable[[], None] | None = None) -> DeleteResult:
    t0 = time.monotonic()
    op = start_delete(cloud, sl)
    if wait:
        cloud.wait_operation(op, timeout=timeout, on_poll=on_poll)
    return DeleteResult(sl.name, deleted=True, seconds=time.monotonic() - t0)
