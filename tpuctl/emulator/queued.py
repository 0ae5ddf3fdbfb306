"""Queued resources: ACCEPTED -> (WAITING_FOR_RESOURCES) -> PROVISIONING -> ACTIVE, their
nodes created through `Nodes`; SUSPENDED when a node is preempted or deleted, reset to
provision again, deleted (with `force`, their nodes too)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import (
    CODE_INTERNAL,
    ApiError,
    already_exists,
    failed_precondition,
    invalid_argument,
    not_found,
)
from tpuctl.emulator.nodes import Nodes
from tpuctl.emulator.nodespec import RESOURCE_ID_RE
from tpuctl.emulator.resources import (
    QUEUED_RESOURCE_TYPE,
    NodePlan,
    QueuedResourceRecord,
    check_location,
    now_rfc3339,
    parse_location,
)

QUEUE_POLL_SECONDS = 0.05  # how often a waiting queued resource looks for capacity again
QUEUED_RESOURCE_INPUT_FIELDS = frozenset(
    {"tpu", "spot", "guaranteed", "queueingPolicy", "reservationName"}
)
QUEUED_RESOURCE_OUTPUT_FIELDS = frozenset({"name", "createTime", "state"})


class QueuedResources:
    """Every queued resource of one emulator, and the tasks that provision them."""

    def __init__(self, core: Core, nodes: Nodes) -> None:
        self._core = core
        self._nodes = nodes
        self._store = core.store
        self._ops = core.ops
        self._tasks = core.tasks
        self._pending_plans: dict[str, list[NodePlan]] = {}  # queued resource -> its nodes

    def get_queued_resource(self, name: str) -> dict[str, Any]:
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self._store.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        return copy.deepcopy(qr.resource)

    def list_queued_resources(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/queuedResources/"
        return [
            copy.deepcopy(q.resource)
            for n, q in self._store.queued_resources.items()
            if n.startswith(prefix)
        ]

    def create_queued_resource(
        self, parent: str, qr_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        check_location(parent)
        if not qr_id or not RESOURCE_ID_RE.match(qr_id):
            raise invalid_argument(f"Invalid queued resource id {qr_id!r}")
        if not isinstance(body, dict):
            raise invalid_argument("the queued resource must be a JSON object")
        unknown = sorted(set(body) - QUEUED_RESOURCE_INPUT_FIELDS - QUEUED_RESOURCE_OUTPUT_FIELDS)
        if unknown:
            raise invalid_argument(
                f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                "'queued_resource': Cannot find field."
            )
        name = f"{parent}/queuedResources/{qr_id}"
        if name in self._store.queued_resources:
            raise already_exists(name)
        specs = (body.get("tpu") or {}).get("nodeSpec") or []
        if not isinstance(specs, list) or not specs:
            raise invalid_argument("tpu.nodeSpec is required")
        plans: list[NodePlan] = []
        spot = "spot" in body
        for spec in specs:
            spec_parent = spec.get("parent") or parent
            if spec_parent != parent:
                raise invalid_argument(
                    f"nodeSpec parent {spec_parent!r} must equal the queued resource's {parent!r}"
                )
            node = dict(spec.get("node") or {})
            if spot:
                node["schedulingConfig"] = {**(node.get("schedulingConfig") or {}), "spot": True}
            for node_id in _spec_node_ids(spec, qr_id):
                plans.append(self._nodes.plan(parent, node_id, node))
        if len({p.node_id for p in plans}) != len(plans):
            raise invalid_argument("duplicate node ids in tpu.nodeSpec")
        resource: dict[str, Any] = {
            "name": name,
            "createTime": now_rfc3339(),
            **{k: copy.deepcopy(body[k]) for k in QUEUED_RESOURCE_INPUT_FIELDS if k in body},
        }
        qr = QueuedResourceRecord(name, resource, [p.resource["name"] for p in plans])
        qr.set_state("ACCEPTED")
        self._store.queued_resources[name] = qr
        self._pending_plans[name] = plans
        op = self._ops.new(parent, "create", name)
        self._ops.finish(
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(resource)}
        )
        self._tasks.spawn(name, self._provision(name))
        self._core.save()
        return op

    async def _provision(self, name: str) -> None:
        """ACCEPTED -> PROVISIONING (nodes created) -> ACTIVE once every node is READY."""
        await asyncio.sleep(self._core.op_delay)
        qr = self._store.queued_resources.get(name)
        if qr is None:
            return
        zone = parse_location(name.rsplit("/queuedResources/", 1)[0])[1]
        faults = self._core.faults
        while qr.state in ("ACCEPTED", "WAITING_FOR_RESOURCES") and faults.stocked_out(zone):
            if qr.state != "WAITING_FOR_RESOURCES":
                qr.set_state("WAITING_FOR_RESOURCES", stateInitiator="SERVICE")
                self._core.save()
            await asyncio.sleep(QUEUE_POLL_SECONDS)
            if self._store.queued_resources.get(name) is not qr:
                return
        if qr.state in ("ACCEPTED", "WAITING_FOR_RESOURCES"):
            plans = self._pending_plans.pop(name, None)
            try:
                if plans is None:  # after a restart or a reset: plan again from the request
                    plans = self._replan(qr)
                for plan in plans:
                    if plan.resource["name"] in self._store.nodes:
                        raise already_exists(plan.resource["name"])
                for plan in plans:
                    rec = self._nodes.store(plan, queued_resource=name)
                    delay = self._core.current_create_delay
                    self._tasks.spawn(rec.name, self._nodes.finish_create(rec.name, delay=delay))
            except ApiError as e:
                qr.set_state("FAILED", failedData={"error": {"code": 9, "message": e.message}})
                self._core.save()
                return
            qr.set_state("PROVISIONING")
            self._core.save()
        while self._store.queued_resources.get(name) is qr and qr.state == "PROVISIONING":
            recs = [self._store.nodes.get(n) for n in qr.node_names]
            if any(r is None for r in recs):
                qr.set_state(
                    "FAILED",
                    failedData={
                        "error": {"code": CODE_INTERNAL, "message": "node creation failed"}
                    },
                )
                break
            if all(r is not None and r.state == "READY" for r in recs):
                qr.set_state("ACTIVE")
                break
            if any(r is not None and r.state not in ("CREATING", "READY") for r in recs):
                return  # deleted or preempted meanwhile; those paths set the state
            await asyncio.sleep(min(0.05, self._core.create_delay / 4 or 0.01))
        self._core.save()

    def _replan(self, qr: QueuedResourceRecord) -> list[NodePlan]:
        parent, qr_id = qr.name.split("/queuedResources/", 1)
        plans = []
        for spec in (qr.resource.get("tpu") or {}).get("nodeSpec") or []:
            node = dict(spec.get("node") or {})
            if "spot" in qr.resource:
                node["schedulingConfig"] = {**(node.get("schedulingConfig") or {}), "spot": True}
            for node_id in _spec_node_ids(spec, qr_id):
                plans.append(self._nodes.plan(parent, node_id, node))
        return plans

    def delete_queued_resource(self, name: str, force: bool = False) -> dict[str, Any]:
        """Like GCP: a queued resource whose nodes still exist needs `force` to go."""
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self._store.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        if qr.state == "DELETING":
            raise failed_precondition(f"Queued resource {name} is already being deleted")
        live = [n for n in qr.node_names if n in self._store.nodes]
        if live and not force:
            raise failed_precondition(
                f"Queued resource {name} still has node(s) {', '.join(live)}: delete them "
                "first or pass force=true"
            )
        parent = name.rsplit("/queuedResources/", 1)[0]
        op = self._ops.new(parent, "delete", name)
        qr.pending_op = op["name"]
        qr.set_state("DELETING")
        self._pending_plans.pop(name, None)
        provisioning = self._tasks.pop(name)
        if provisioning is not None:
            provisioning.cancel()
        for node_name in live:
            rec = self._store.nodes[node_name]
            if rec.state != "DELETING":
                node_op = self._ops.new(parent, "delete", node_name)
                self._nodes.begin_delete(rec, node_op["name"])
        self._tasks.spawn(name, self._finish_delete(name))
        self._core.save()
        return op

    async def _finish_delete(self, name: str) -> None:
        await asyncio.sleep(self._core.op_delay)
        qr = self._store.queued_resources.get(name)
        if qr is None:
            return
        while any(n in self._store.nodes for n in qr.node_names):
            await asyncio.sleep(0.02)
        del self._store.queued_resources[name]
        self._ops.finish(qr.pending_op)
        self._core.save()

    def reset_queued_resource(self, name: str) -> dict[str, Any]:
        """SUSPENDED/FAILED -> ACCEPTED: provision the nodes again."""
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self._store.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        if qr.state not in ("SUSPENDED", "FAILED"):
            raise failed_precondition(f"Queued resource {name} is {qr.state}; it cannot be reset")
        if any(n in self._store.nodes for n in qr.node_names):
            raise failed_precondition(f"Queued resource {name} still has nodes; delete them first")
        qr.set_state("ACCEPTED")
        op = self._ops.new(name.rsplit("/queuedResources/", 1)[0], "reset", name)
        self._ops.finish(
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(qr.resource)}
        )
        self._tasks.spawn(name, self._provision(name))
        self._core.save()
        return op

    def resume(self) -> None:
        """After a restart: provision (or delete) what was under way."""
        for qr in list(self._store.queued_resources.values()):
            if qr.state in ("ACCEPTED", "PROVISIONING", "WAITING_FOR_RESOURCES"):
                self._tasks.spawn(qr.name, self._provision(qr.name))
            elif qr.state == "DELETING":
                self._tasks.spawn(qr.name, self._finish_delete(qr.name))


def _spec_node_ids(spec: dict[str, Any], qr_id: str) -> list[str]:
    """Node ids of one `tpu.nodeSpec` entry: its nodeId, or `prefix-0..n-1` for multislice."""
    multi = spec.get("multisliceParams")
    if not multi:
        return [str(spec.get("nodeId", ""))]
    try:
        count = int(multi.get("nodeCount", 0))
    except (TypeError, ValueError) as e:
        raise invalid_argument("multisliceParams.nodeCount must be an integer") from e
    if count < 1:
        raise invalid_argument("multisliceParams.nodeCount must be positive")
    prefix = str(multi.get("nodeIdPrefix") or spec.get("nodeId") or qr_id)
    return [f"{prefix}-{i}" for i in range(count)]
