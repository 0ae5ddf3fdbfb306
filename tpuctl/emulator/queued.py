"""Queued resources: ACCEPTED -> WAITING_FOR_RESOURCES (while capacity or the queueing policy
says so) -> PROVISIONING -> ACTIVE, every node at once or none (queuedspec.py checks the
request); FAILED past the policy's valid-until, for a reservation that does not exist, or
when one of its nodes cannot be created (the others are deleted); SUSPENDED when a node is
preempted or deleted; reset to provision again; deleted (with `force`, its nodes too).

What holds a request back: its window (validAfter*), a stocked-out zone (on-demand and spot
capacity; a reservation is held for you), too few free chips in its reservation, too few
free address blocks in the emulator. A multislice group's nodes learn their place in it
(`NodeRecord.megascale`: slice id, number of slices, the MEGASCALE coordinator: slice 0's
worker 0, internal address) as they are stored.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from tpuctl.emulator import addressing, capacity
from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import (
    CODE_RESOURCE_EXHAUSTED,
    ApiError,
    already_exists,
    failed_precondition,
    not_found,
)
from tpuctl.emulator.nodes import Nodes
from tpuctl.emulator.queuedspec import (
    INPUT_FIELDS,
    MEGASCALE_PORT,
    QueuedPlan,
    check_request,
    plan_queued,
    stored_plan,
)
from tpuctl.emulator.reservations import Want
from tpuctl.emulator.resources import (
    QUEUED_RESOURCE_TYPE,
    NodeRecord,
    QueuedResourceRecord,
    check_location,
    parse_location,
)

QUEUE_POLL_SECONDS = 0.05  # how often a waiting queued resource looks for capacity again
CODE_DEADLINE_EXCEEDED = 4
CODE_NOT_FOUND = 5
_WAITING = ("ACCEPTED", "WAITING_FOR_RESOURCES")


class QueuedResources:
    """Every queued resource of one emulator, and the tasks that provision them."""

    def __init__(self, core: Core, nodes: Nodes) -> None:
        self._core = core
        self._nodes = nodes
        self._store = core.store
        self._ops = core.ops
        self._tasks = core.tasks
        self._pending: dict[str, QueuedPlan] = {}  # queued resource -> its checked request

    def get_queued_resource(self, name: str) -> dict[str, Any]:
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self._store.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        return copy.deepcopy(qr.resource)

    def list_queued_resources(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/queuedResources/"
        return [copy.deepcopy(q.resource)
                for n, q in self._store.queued_resources.items() if n.startswith(prefix)]

    def create_queued_resource(self, parent: str, qr_id: str,
                               body: dict[str, Any]) -> dict[str, Any]:
        check_location(parent)
        check_request(parent, qr_id, body)
        name = f"{parent}/queuedResources/{qr_id}"
        if name in self._store.queued_resources:
            raise already_exists(name)
        created = time.time()
        plan = plan_queued(parent, qr_id, body, created, self._nodes.plan)
        resource: dict[str, Any] = {
            "name": name,
            "createTime": capacity.rfc3339(created),
            **{k: copy.deepcopy(body[k]) for k in INPUT_FIELDS if k in body},
        }
        qr = QueuedResourceRecord(name, resource, [p.resource["name"] for p in plan.plans])
        qr.set_state("ACCEPTED")
        self._store.queued_resources[name] = qr
        self._pending[name] = plan
        op = self._ops.new(parent, "create", name)
        self._ops.finish(
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(resource)})
        self._tasks.spawn(name, self._provision(name))
        self._core.save()
        return op

    # ---------------------------------------------------------------- provisioning

    def _fail(self, qr: QueuedResourceRecord, code: int, message: str) -> None:
        qr.set_state("FAILED", stateInitiator="SERVICE",
                     failedData={"error": {"code": code, "message": message}})
        self._core.save()

    def _blocked(self, qr: QueuedResourceRecord, plan: QueuedPlan) -> bool | tuple[int, str]:
        """True while capacity holds the request back; an error when it never will."""
        zone = parse_location(qr.name.rsplit("/queuedResources/", 1)[0])[1]
        used = self._store.used_slots()
        if addressing.MAX_SLOTS - len(used) < len(plan.plans) + 16:  # near the emulator's limit
            free = addressing.MAX_SLOTS - len(used | addressing.slots_elsewhere())
            if free < len(plan.plans):
                return True
        ref = plan.reservation
        if ref is None:
            return self._core.faults.stocked_out(zone)
        if ref.reservation != "-" and not self._core.reservations.exists(
                ref.project, ref.zone, ref.reservation):
            return CODE_NOT_FOUND, f"Reservation {ref.name} was not found"
        return self._assign(plan) is None

    def _assign(self, plan: QueuedPlan) -> dict[str, str] | None:
        ref = plan.reservation
        assert ref is not None
        wants = [Want(p.resource["name"], p.accelerator) for p in plan.plans]
        return self._core.reservations.assign(ref.project, ref.zone, ref.reservation, wants)

    async def _provision(self, name: str) -> None:
        """ACCEPTED -> (WAITING_FOR_RESOURCES) -> PROVISIONING (every node created) ->
        ACTIVE once every node is READY."""
        await asyncio.sleep(self._core.op_delay)
        qr = self._store.queued_resources.get(name)
        if qr is None:
            return
        if qr.state in _WAITING:
            plan = self._pending.pop(name, None)
            if plan is None:  # after a restart or a reset: plan again from the request
                try:
                    plan = stored_plan(name, qr.resource, self._nodes.plan)
                except Exception as e:
                    self._fail(qr, 9, str(getattr(e, "message", e)))
                    return
            if not await self._wait_for_capacity(qr, plan):
                return
            self._store_nodes(qr, plan)
        await self._until_active(qr)

    async def _wait_for_capacity(self, qr: QueuedResourceRecord, plan: QueuedPlan) -> bool:
        """Hold the request while its window or capacity says so; False if it failed or went
        away meanwhile."""
        while self._store.queued_resources.get(qr.name) is qr and qr.state in _WAITING:
            now = time.time()
            if plan.window.expired(now):
                until = capacity.rfc3339(plan.window.until or now)
                self._fail(qr, CODE_DEADLINE_EXCEEDED,
                           f"The queued resource could not be provisioned before its "
                           f"valid-until time {until}")
                return False
            blocked = plan.window.waiting(now) or self._blocked(qr, plan)
            if isinstance(blocked, tuple):
                self._fail(qr, *blocked)
                return False
            if not blocked:
                return True
            if qr.state != "WAITING_FOR_RESOURCES":
                qr.set_state("WAITING_FOR_RESOURCES", stateInitiator="SERVICE")
                self._core.save()
            await asyncio.sleep(QUEUE_POLL_SECONDS)
        return False

    def _store_nodes(self, qr: QueuedResourceRecord, plan: QueuedPlan) -> None:
        """Every node at once (their reservation chips taken, multislice places known)."""
        assigned = self._assign(plan) if plan.reservation is not None else {}
        recs: list[NodeRecord] = []
        for p in plan.plans:
            if p.resource["name"] in self._store.nodes:
                for rec in recs:
                    self._store.nodes.pop(rec.name, None)
                self._fail(qr, 6, f"Resource '{p.resource['name']}' already exists")
                return
            try:
                rec = self._nodes.store(p, queued_resource=qr.name)
            except ApiError as e:  # no address block left after all: none of them
                for stored in recs:
                    self._store.nodes.pop(stored.name, None)
                self._fail(qr, CODE_RESOURCE_EXHAUSTED, e.message)
                return
            rec.reservation = (assigned or {}).get(rec.name)
            recs.append(rec)
        by_name = {r.name: r for r in recs}
        for group in plan.groups:
            coordinator = addressing.internal_ip(by_name[group[0]].slot, 0)
            for i, node_name in enumerate(group):
                by_name[node_name].megascale = {
                    "sliceId": i, "numSlices": len(group), "port": MEGASCALE_PORT,
                    "coordinator": f"{coordinator}:{MEGASCALE_PORT}"}
        for rec in recs:
            delay = self._core.current_create_delay
            self._tasks.spawn(rec.name, self._nodes.finish_create(rec.name, delay=delay))
        qr.set_state("PROVISIONING", stateInitiator="SERVICE")
        self._core.save()

    async def _until_active(self, qr: QueuedResourceRecord) -> None:
        """ACTIVE once every node is READY; FAILED (and the others deleted) when one could
        not be created."""
        while self._store.queued_resources.get(qr.name) is qr and qr.state == "PROVISIONING":
            recs = [self._store.nodes.get(n) for n in qr.node_names]
            if any(r is None for r in recs):
                error = self._create_error(qr) or (13, "node creation failed")
                for rec in recs:
                    if rec is not None and rec.state != "DELETING":
                        parent = rec.name.rsplit("/nodes/", 1)[0]
                        self._nodes.begin_delete(rec, self._ops.new(parent, "delete",
                                                                    rec.name)["name"])
                self._fail(qr, *error)
                return
            if all(r is not None and r.state == "READY" for r in recs):
                qr.set_state("ACTIVE", stateInitiator="SERVICE")
                break
            if any(r is not None and r.state not in ("CREATING", "READY") for r in recs):
                return  # deleted or preempted meanwhile; those paths set the state
            await asyncio.sleep(min(0.05, self._core.create_delay / 4 or 0.01))
        self._core.save()

    def _create_error(self, qr: QueuedResourceRecord) -> tuple[int, str] | None:
        """Why the first of the request's nodes that failed could not be created."""
        errors = [self._core.create_errors.pop(n) for n in qr.node_names
                  if n in self._core.create_errors]
        return errors[0] if errors else None

    # ---------------------------------------------------------------- delete, reset

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
                "first or pass force=true")
        parent = name.rsplit("/queuedResources/", 1)[0]
        op = self._ops.new(parent, "delete", name)
        qr.pending_op = op["name"]
        qr.set_state("DELETING")
        self._pending.pop(name, None)
        provisioning = self._tasks.pop(name)
        if provisioning is not None:
            provisioning.cancel()
        for node_name in live:
            rec = self._store.nodes[node_name]
            if rec.state != "DELETING":
                self._nodes.begin_delete(rec, self._ops.new(parent, "delete", node_name)["name"])
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
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(qr.resource)})
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
