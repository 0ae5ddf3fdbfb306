"""`list`, `describe`, `delete`: the read and remove side of the control plane."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tpuctl.errors import Declined, UsageError
from tpuctl.model import Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops.ports import Ports

if TYPE_CHECKING:
    from tpuctl.ops.idle import Idleness
    from tpuctl.prices import Price


@dataclass(frozen=True)
class NodeCost:
    """What a node costs: its price per hour, its age, and what it has cost so far (price
    times age: billing runs from createTime while the node is up; nothing once it is gone)."""

    price: Price
    age_s: float | None

    @property
    def so_far(self) -> float | None:
        return None if self.age_s is None else self.price.for_hours(self.age_s / 3600)

    def to_dict(self) -> dict[str, object]:
        so_far = self.so_far
        return {"price_per_hour": self.price.to_dict(),
                "age_s": None if self.age_s is None else round(self.age_s, 1),
                "cost_so_far": None if so_far is None else round(so_far, 4)}


def node_cost(sl: Slice, now: float) -> NodeCost:
    from tpuctl.ops.access import GONE_STATES
    from tpuctl.ops.runspans import iso_seconds
    from tpuctl.prices import price_for

    created = iso_seconds(sl.create_time)
    age = None if created is None or sl.state in GONE_STATES else max(0.0, now - created)
    return NodeCost(price_for(sl.accelerator_type, sl.zone, sl.spot), age)


@dataclass(frozen=True)
class NodeList:
    project: str
    zone: str
    nodes: tuple[Slice, ...]
    include_unmanaged: bool = False
    costs: dict[str, NodeCost] = field(default_factory=dict)
    idle: dict[str, Idleness] = field(default_factory=dict)  # this user's READY nodes
    idle_warn: float = 1800.0  # seconds idle before a node is flagged
    now: float = 0.0

    @property
    def without_owner(self) -> list[str]:
        """Managed nodes made before tpuctl recorded owners."""
        return [n.name for n in self.nodes if n.managed and n.owner is None]

    @property
    def flagged(self) -> list[str]:
        """Nodes idle (up, no run) for longer than `idle_warn`."""
        return [n for n, i in sorted(self.idle.items()) if i.idle_for(self.now) > self.idle_warn]

    @property
    def groups(self) -> dict[str, str]:
        """The multislice group of each node that is a slice of one: the queued resource NAME
        whose nodes are `NAME-0`, `NAME-1`, ... (cloud/groups.py), the name every other
        command takes for the whole group."""
        from tpuctl.cloud.groups import group_of

        return {n.name: g for n in self.nodes if (g := group_of(n)) is not None}

    def to_dict(self) -> list[dict[str, object]]:
        out = []
        groups = self.groups
        for n in self.nodes:
            d = n.to_dict()
            d["group"] = groups.get(n.name)
            if n.name in self.costs:
                d.update(self.costs[n.name].to_dict())
            if n.name in self.idle:
                d["idle"] = self.idle[n.name].to_dict(self.now, self.idle_warn)
            out.append(d)
        return out


def list_nodes(ports: Ports, *, include_unmanaged: bool = False, costs: bool = True,
               now: float | None = None) -> NodeList:
    """The zone's nodes (managed only, unless asked), each with its price, age and cost so
    far, and this user's READY nodes with how long they have been idle (ops/idle.py)."""
    cloud = ports.cloud
    nodes = cloud.list_nodes()
    if not include_unmanaged:
        nodes = [n for n in nodes if n.managed]
    nodes = sorted(nodes, key=lambda n: n.name)
    if not costs:
        return NodeList(cloud.project, cloud.zone, tuple(nodes), include_unmanaged)
    from tpuctl.config import idle_warn_setting
    from tpuctl.ops.idle import assess
    from tpuctl.ops.owner import me

    now = time.time() if now is None else now
    warn, _ = idle_warn_setting()
    mine = [n for n in nodes if n.managed and n.owner in (None, me(cloud))]
    return NodeList(cloud.project, cloud.zone, tuple(nodes), include_unmanaged,
                    {n.name: node_cost(n, now) for n in nodes},
                    assess(ports, mine, now, older_than=warn), warn, now)


@dataclass(frozen=True)
class NodeDetail:
    """`describe`: the node, and what it costs."""

    slice: Slice
    cost: NodeCost

    def to_dict(self) -> dict[str, object]:
        return {**self.slice.to_dict(), **self.cost.to_dict()}


def describe(ports: Ports, name: str, now: float | None = None) -> NodeDetail:
    validate_node_name(name)
    sl = ports.cloud.get_node(name)
    return NodeDetail(sl, node_cost(sl, time.time() if now is None else now))


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
    refuses deleting such a node directly), else the node itself. The cost ledger gets the
    node's end: deleted, or preempted when it already was."""
    from tpuctl.ops.access import GONE_STATES
    from tpuctl.ops.ledgernotes import note_node

    cloud = ports.cloud
    ports.local.forget_slice(cloud, sl.name)
    if sl.queued_resource:
        op = cloud.delete_queued_resource(sl.queued_resource.rsplit("/", 1)[-1])
    else:
        op = cloud.delete_node(sl.name)
    note_node(ports, "preempted" if sl.state in GONE_STATES else "delete", sl)
    return op


def delete(ports: Ports, sl: Slice, *, wait: bool = True, timeout: float = 900.0,
           on_poll: Callable[[], None] | None = None) -> DeleteResult:
    t0 = time.monotonic()
    op = start_delete(ports, sl)
    if wait:
        ports.cloud.wait_operation(op, timeout=timeout, on_poll=on_poll)
    return DeleteResult(sl.name, deleted=True, seconds=time.monotonic() - t0, waited=wait)
