"""Nodes and their life cycle: CREATING -> READY <-> STOPPING/STOPPED/STARTING, DELETING,
each transition one task that finishes the node's operation; reads render the API's view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tpuctl.emulator import addressing, guestagent, nodeboot
from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import (
    CODE_ABORTED,
    CODE_INTERNAL,
    ApiError,
    failed_precondition,
    not_found,
)
from tpuctl.emulator.nodespec import plan_node, update_paths, updated
from tpuctl.emulator.nodeviews import guest_attributes, node_any, render_node
from tpuctl.emulator.resources import (
    NodePlan,
    NodeRecord,
    check_location,
    parse_location,
)

if TYPE_CHECKING:
    from tpuctl.emulator.reconcile import Reconciler

log = logging.getLogger(__name__)

class Nodes:
    """Every node of one emulator, read and moved through its states."""

    def __init__(self, core: Core, reconciler: Reconciler) -> None:
        self._core = core
        self._reconciler = reconciler
        self._store = core.store
        self._ops = core.ops
        self._tasks = core.tasks
        self._workers = core.workers

    # ---------------------------------------------------------------- reads

    def get_record(self, name: str) -> NodeRecord:
        parent = name.rsplit("/nodes/", 1)[0]
        check_location(parent)
        rec = self._store.nodes.get(name)
        if rec is None:
            raise not_found(name)
        return rec

    def get_node(self, name: str) -> dict[str, Any]:
        return render_node(self.get_record(name), self._core.faults)

    def list_nodes(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/nodes/"
        return [render_node(r, self._core.faults) for n, r in self._store.nodes.items()
                if n.startswith(prefix)]

    def authorized_keys(self, name: str, user: str) -> list[str]:
        """Asked by the worker host at each SSH auth attempt: the keys the node's guest agent
        has applied by now (its `ssh-keys`, or its OS Login accounts')."""
        return self._core.agents.authorized(name, user)

    def wanted_logins(self, rec: NodeRecord) -> tuple[bool, frozenset[guestagent.Login]]:
        """What the node's guest agent should apply, from node, project and OS Login."""
        project = parse_location(rec.name.rsplit("/nodes/", 1)[0])[0]
        return guestagent.desired(rec.resource.get("metadata", {}),
                                  self._core.projects.metadata(project),
                                  self._core.oslogin.logins())

    def refresh_logins(self) -> None:
        """Project metadata or an OS Login profile changed: every agent takes it up."""
        for rec in self._store.nodes.values():
            self._core.agents.change(rec.name, self.wanted_logins(rec))

    def node_any(self, rec: NodeRecord) -> dict[str, Any]:
        return node_any(rec, self._core.faults)

    def guest_attributes(
        self, name: str, query_path: str = "", worker_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """One entry per registered worker (worker order): host keys, hostname, SSH port."""
        return guest_attributes(self.get_record(name), self._core.faults, query_path,
                                worker_ids)

    # ---------------------------------------------------------------- create

    def plan(self, parent: str, node_id: str, body: dict[str, Any]) -> NodePlan:
        return plan_node(parent, node_id, body, self._store.nodes)

    def _allocate_slot(self) -> int:
        slot = self._store.allocate_slot()
        if slot is None:
            raise ApiError(
                429,
                "RESOURCE_EXHAUSTED",
                f"the emulator holds at most {addressing.MAX_SLOTS} nodes; delete some first",
            )
        return slot

    def store(self, plan: NodePlan, queued_resource: str | None = None) -> NodeRecord:
        if queued_resource:
            plan.resource["queuedResource"] = queued_resource
        rec = NodeRecord(
            name=plan.resource["name"],
            resource=plan.resource,
            slot=self._allocate_slot(),
            key=f"{plan.project}.{plan.zone}.{plan.node_id}",
            hosts=plan.accelerator.hosts,
            chips_per_host=plan.accelerator.chips_per_host,
        )
        self._store.nodes[rec.name] = rec
        return rec

    def create_node(self, parent: str, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan(parent, node_id, body)
        faults = self._core.faults
        reserved = plan.resource["schedulingConfig"].get("reserved")
        if faults.stocked_out(plan.zone) and faults.stockout_mode == "request" and not reserved:
            raise ApiError(429, "RESOURCE_EXHAUSTED", faults.stockout_message(plan.zone))
        rec = self.store(plan)
        op = self._ops.new(parent, "create", rec.name)
        rec.pending_op = op["name"]
        self._tasks.spawn(
            rec.name, self.finish_create(rec.name, delay=self._core.current_create_delay)
        )
        self._core.save()
        return op

    async def _start_workers(self, rec: NodeRecord, *, booted: bool = False) -> None:
        """Bring up the node's workers; its guest agent applies its logins (after the delay,
        unless the node had booted before the emulator restarted)."""
        name = rec.name
        started = await self._workers.start_node(
            rec.key,
            rec.slot,
            rec.hosts,
            rec.chips_per_host,
            lambda user: self.authorized_keys(name, user),
        )
        rec.workers = [
            {"index": w.index, "ip": w.ip, "ssh_port": w.ssh_port, "host_key": w.host_key}
            for w in sorted(started, key=lambda w: w.index)
        ]
        await nodeboot.attach_disks(self._core, rec)
        self._core.agents.boot(name, self.wanted_logins(rec), applied=booted)
        # fresh listeners: every worker reachable again, then the faults apply anew
        await self._reconciler.restarted(rec.key)

    async def _restart_workers(self, rec: NodeRecord) -> None:
        try:
            await self._start_workers(rec, booted=True)
        except Exception:  # a node whose workers cannot come back is unhealthy, not fatal
            log.exception("could not restart the workers of %s", rec.name)
            rec.resource["health"] = "TIMEOUT"
            return
        nodeboot.run_startup_scripts(self._core, rec)  # its processes died: a reboot

    async def _pending(self, name: str, state: str, delay: float) -> NodeRecord | None:
        """After the operation's delay, the node if it is still in `state` (a delete or
        another operation in between ends this one's work)."""
        await asyncio.sleep(delay)
        rec = self._store.nodes.get(name)
        return rec if rec is not None and rec.state == state else None

    def _settle(self, rec: NodeRecord, state: str,
                error: tuple[int, str] | None = None) -> None:
        """The node reaches `state`; its pending operation ends with `error`, else with the
        node as it now is."""
        rec.resource["state"] = state
        if state == "READY":
            rec.resource["health"] = "HEALTHY"
        if error is None:
            self._ops.finish(rec.pending_op, response=self.node_any(rec))
        else:
            self._ops.finish(rec.pending_op, error=error)
        rec.pending_op = None
        self._core.save()

    def _fail_create(self, rec: NodeRecord, error: tuple[int, str]) -> None:
        """The create operation fails and the node is gone (as on GCP)."""
        self._store.nodes.pop(rec.name, None)
        nodeboot.release(self._core, rec)
        self._ops.finish(rec.pending_op, error=error)
        if rec.resource.get("queuedResource"):
            self._core.create_errors[rec.name] = error
        self._core.save()

    async def finish_create(self, name: str, *, delay: float) -> None:
        rec = await self._pending(name, "CREATING", delay)
        if rec is None:
            return
        refused = nodeboot.admit(self._core, rec)
        if refused is not None:  # capacity or disks: code 8 (stockout, reservation), 5, 9
            self._fail_create(rec, refused)
            return
        try:
            await self._start_workers(rec)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("creating %s failed", name)
            with contextlib.suppress(Exception):
                await self._workers.stop_node(rec.key)
                self._workers.remove_node(rec.key)
            self._fail_create(rec, (CODE_INTERNAL, f"could not start the workers: {e}"))
            return
        self._settle(rec, "READY")
        nodeboot.run_startup_scripts(self._core, rec)

    # ---------------------------------------------------------------- stop/start

    def _begin(self, name: str, op_verb: str, needs: str, becomes: str,
               finish: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
        """Start a node transition (stop, start): check the state, open its operation."""
        rec = self.get_record(name)
        if rec.state != needs:
            done = {"stop": "stopped", "start": "started"}[op_verb]
            raise failed_precondition(
                f"Node {name} is {rec.state}; only a {needs} node can be {done}"
            )
        rec.resource["state"] = becomes
        if op_verb == "stop":
            rec.resource.pop("health", None)
        op = self._ops.new(name.rsplit("/nodes/", 1)[0], op_verb, name)
        rec.pending_op = op["name"]
        self._tasks.spawn(name, finish(name))
        self._core.save()
        return op

    def stop_node(self, name: str) -> dict[str, Any]:
        return self._begin(name, "stop", "READY", "STOPPING", self._finish_stop)

    async def _finish_stop(self, name: str) -> None:
        rec = await self._pending(name, "STOPPING", self._core.op_delay)
        if rec is None:
            return
        await self._workers.stop_node(rec.key)
        self._settle(rec, "STOPPED")

    def start_node(self, name: str) -> dict[str, Any]:
        return self._begin(name, "start", "STOPPED", "STARTING", self._finish_start)

    async def _finish_start(self, name: str) -> None:
        rec = await self._pending(name, "STARTING", self._core.op_delay)
        if rec is None:
            return
        try:
            await self._start_workers(rec)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("starting %s failed", name)
            self._settle(rec, "STOPPED",
                         error=(CODE_INTERNAL, f"could not start the workers: {e}"))
            return
        self._settle(rec, "READY")
        nodeboot.run_startup_scripts(self._core, rec)  # at every boot, as on GCP

    # ---------------------------------------------------------------- update

    def update_node(self, name: str, body: dict[str, Any], update_mask: str) -> dict[str, Any]:
        """Apply only the masked fields (at once, so new ssh-keys work immediately)."""
        rec = self.get_record(name)
        paths = update_paths(body, update_mask)
        if rec.state not in ("READY", "STOPPED"):
            raise failed_precondition(f"Node {name} is {rec.state}; it cannot be updated now")
        before, rec.resource = rec.resource, updated(rec.resource, body, paths)
        if "dataDisks" in paths:  # attach and detach now, as GCP's UpdateNode does
            refused = self._core.disks.check_attach(rec)
            if refused is not None:
                rec.resource = before
                raise ApiError(404 if refused[0] == 5 else 400,
                               "NOT_FOUND" if refused[0] == 5 else "FAILED_PRECONDITION",
                               refused[1])
            if rec.workers and rec.state == "READY":
                self._tasks.spawn_background(nodeboot.attach_disks(self._core, rec))
        self._core.agents.change(name, self.wanted_logins(rec))
        op = self._ops.new(name.rsplit("/nodes/", 1)[0], "update", name)
        op_name = op["name"]
        self._tasks.spawn_background(self._finish_update(name, op_name))
        if rec.workers and rec.state == "READY":  # external IPs may have come or gone
            self._tasks.spawn_background(self._reconciler.apply())
        self._core.save()
        return op

    async def _finish_update(self, name: str, op_name: str) -> None:
        await asyncio.sleep(self._core.op_delay)
        rec = self._store.nodes.get(name)
        if rec is None:
            self._ops.finish(op_name, error=(CODE_ABORTED, f"node {name} was deleted"))
        else:
            self._ops.finish(op_name, response=self.node_any(rec))
        self._core.save()

    # ---------------------------------------------------------------- delete

    def delete_node(self, name: str) -> dict[str, Any]:
        rec = self.get_record(name)
        if rec.state == "DELETING":
            raise failed_precondition(f"Node {name} is already being deleted")
        op = self._ops.new(name.rsplit("/nodes/", 1)[0], "delete", name)
        self.begin_delete(rec, op["name"])
        self._core.save()
        return op

    def begin_delete(self, rec: NodeRecord, op_name: str) -> None:
        previous = self._tasks.get(rec.name)
        aborted_op = rec.pending_op
        rec.resource["state"] = "DELETING"
        rec.resource.pop("health", None)
        rec.pending_op = op_name
        self._tasks.spawn(rec.name, self._finish_delete(rec.name, previous, aborted_op))

    async def _finish_delete(
        self,
        name: str,
        previous: asyncio.Task[None] | None = None,
        aborted_op: str | None = None,
    ) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        if aborted_op:
            self._ops.finish(
                aborted_op, error=(CODE_ABORTED, f"node {name} was deleted meanwhile")
            )
        await asyncio.sleep(self._core.op_delay)
        rec = self._store.nodes.get(name)
        if rec is None:
            return
        await self._workers.stop_node(rec.key)
        self._workers.remove_node(rec.key)
        del self._store.nodes[name]
        nodeboot.release(self._core, rec)
        self._core.agents.forget(name)
        self._ops.finish(rec.pending_op)
        qr_name = rec.resource.get("queuedResource")
        qr = self._store.queued_resources.get(qr_name or "")
        if qr is not None and qr.state in ("ACTIVE", "PROVISIONING"):
            qr.set_state("SUSPENDED")
        self._core.save()

    # ---------------------------------------------------------------- restart

    async def resume(self) -> None:
        """After a restart: finish each node's transition, restart READY nodes' workers."""
        restarts = []
        for rec in list(self._store.nodes.values()):
            state = rec.state
            if state == "CREATING":
                delay = self._core.current_create_delay
                self._tasks.spawn(rec.name, self.finish_create(rec.name, delay=delay))
            elif state == "STARTING":
                self._tasks.spawn(rec.name, self._finish_start(rec.name))
            elif state == "DELETING":
                self._tasks.spawn(rec.name, self._finish_delete(rec.name))
            elif state == "STOPPING":
                self._tasks.spawn(rec.name, self._finish_stop(rec.name))
            elif state == "READY":
                restarts.append(self._restart_workers(rec))
        if restarts:
            await asyncio.gather(*restarts)
