"""`list`, `describe`, `delete`: the read and remove side of the control plane."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.errors import Declined, UsageError
from tpuctl.model import Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops.ports import Ports


@dataclass(frozen=True)
class NodeList:
    project: str
    zone: str
    nodes: tuple[Slice, ...]
    include_unmanaged: bool = False

    @property
    def without_owner(self) -> list[str]:
        """Managed nodes made before tpuctl recorded owners."""
        return [n.name for n in self.nodes if n.managed and n.owner is None]

    def to_dict(self) -> list[dict[str, object]]:
        return [n.to_dict() for n in self.nodes]


def list_nodes(ports: Ports, *, include_unmanaged: bool = False) -> NodeList:
    cloud = ports.cloud
    nodes = cloud.list_nodes()
    if not include_unmanaged:
        nodes = [n for n in nodes if n.managed]
    return NodeList(cloud.project, cloud.zone, tuple(sorted(nodes, key=lambda n: n.name)),
                    include_unmanaged)


def describe(ports: Ports, name: str) -> Slice:
    validate_node_name(name)
    return ports.cloud.get_node(name)


@dataclass(frozen=True)
class DeleteResult:
    name: str
    deleted: bool
    seconds: float
    waited: bool = True  # False: the delete was started, not waited for (--no-wait)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "deleted": self.deleted, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class DeleteRequest:
    name: str
    wait: bool = True
    any_owner: bool = False
    yes: bool = False  # no confirmation asked
    can_ask: bool = False  # a person at a terminal can answer a confirmation


class DeleteEvents:
    def confirm(self, sl: Slice) -> bool:
        """Asked when the request did not say `yes`: delete this node?"""
        return False

    def polling(self) -> None:
        """Once per poll of the delete operation."""


def require_yes(yes: bool, can_ask: bool, what: str, hint: str) -> None:
    """Destructive commands off a terminal need --yes: they refuse rather than hang."""
    if not yes and not can_ask:
        raise UsageError(f"refusing to {what} without --yes (stdin is not a terminal)",
                         hint=hint)


def delete_node(ports: Ports, req: DeleteRequest, events: DeleteEvents | None = None
                ) -> DeleteResult:
    """The `delete` command: a managed node of yours, after a confirmation unless `yes`."""
    events = events or DeleteEvents()
    validate_node_name(req.name)
    require_yes(req.yes, req.can_ask, f"delete {req.name!r}",
                f"run `tpuctl delete {req.name} --yes`")
    sl = check_deletable(ports, req.name, any_owner=req.any_owner)
    if not req.yes and not events.confirm(sl):
        raise Declined(f"{req.name} not deleted", hint="nothing was changed")
    return delete(ports, sl, wait=req.wait, on_poll=events.polling)


def check_deletable(ports: Ports, name: str, *, any_owner: bool = False) -> Slice:
    """Only managed nodes may be deleted, and only the caller's own unless `any_owner`:
    tpuctl never touches what it does not own."""
    from tpuctl.ops.owner import check_ours

    validate_node_name(name)
    sl = ports.cloud.get_node(name)
    check_ours(ports.cloud, sl, doing="delete", any_owner=any_owner)
    return sl


def start_delete(ports: Ports, sl: Slice) -> str:
    """The delete operation for a node: through its queued resource when one owns it (GCP
    refuses deleting such a node directly), else the node itself."""
    cloud = ports.cloud
    ports.local.forget_slice(cloud, sl.name)
    if sl.queued_resource:
        return cloud.delete_queued_resource(sl.queued_resource.rsplit("/", 1)[-1])
    return cloud.delete_node(sl.name)


def delete(ports: Ports, sl: Slice, *, wait: bool = True, timeout: float = 900.0,
           on_poll: Callable[[], None] | None = None) -> DeleteResult:
    t0 = time.monotonic()
    op = start_delete(ports, sl)
    if wait:
        ports.cloud.wait_operation(op, timeout=timeout, on_poll=on_poll)
    return DeleteResult(sl.name, deleted=True, seconds=time.monotonic() - t0, waited=wait)
