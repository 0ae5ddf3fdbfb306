"""Nodes and their life cycle: CREATING -> READY <-> STOPPING/STOPPED/STARTING, DELETING,
each transition one task that finishes the node's operation; reads render the API's view."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from tpuctl.emulator import catalog
from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import (
    CODE_ABORTED,
    CODE_INTERNAL,
    CODE_RESOURCE_EXHAUSTED,
    ApiError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from tpuctl.emulator.nodespec import plan_node, update_paths, updated
from tpuctl.emulator.resources import (
    NODE_TYPE,
    NodePlan,
    NodeRecord,
    check_location,
    parse_location,
    parse_ssh_keys,
)

if TYPE_CHECKING:
    from tpuctl.emulator.chaos import Reachability

log = logging.getLogger(__name__)

MAX_SLOTS = 254
HOSTKEYS_NAMESPACE = "hostkeys"
EMULATOR_NAMESPACE = "tpuctl-emulator"  # documented divergence: the worker's SSH port


def render_node(rec: NodeRecord) -> dict[str, Any]:
    """The node as the API shows it (enum names; the HTTP layer may turn them to ints)."""
    node = copy.deepcopy(rec.resource)
    if rec.workers and rec.state != "CREATING":
        external = bool(node.get("networkConfig", {}).get("enableExternalIps"))
        endpoints = []
        for w in sorted(rec.workers, key=lambda w: int(w["index"])):
            ep: dict[str, Any] = {"ipAddress": w["ip"], "port": catalog.ENDPOINT_PORT}
            if external:  # loopback is as "external" as the emulator gets
                ep["accessConfig"] = {"externalIp": w["ip"]}
            endpoints.append(ep)
        node["networkEndpoints"] = endpoints
    return node


def node_any(rec: NodeRecord) -> dict[str, Any]:
    """The node as an operation's `response` (a google.protobuf.Any)."""
    return {"@type": NODE_TYPE, **render_node(rec)}


class Nodes:
    """Every node of one emulator, read and moved through its states."""

    def __init__(self, core: Core, reachability: Reachability) -> None:
        self._core = core
        self._reachability = reachability
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
        return render_node(self.get_record(name))

    def list_nodes(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/nodes/"
        return [render_node(r) for n, r in self._store.nodes.items() if n.startswith(prefix)]

    def authorized_keys(self, name: str, user: str) -> list[str]:
        """Asked by the worker host at each SSH auth attempt: the node's *current* keys."""
        rec = self._store.nodes.get(name)
        if rec is None:
            return []
        return parse_ssh_keys(rec.resource.get("metadata", {}), user)

    def guest_attributes(
        self, name: str, query_path: str = "", worker_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """One entry per worker (worker order): host keys, plus the emulator's SSH port."""
        rec = self.get_record(name)
        workers = sorted(rec.workers, key=lambda w: int(w["index"]))
        if worker_ids:
            try:
                wanted = {int(w) for w in worker_ids}
            except ValueError as e:
                raise invalid_argument(f"invalid worker id in {list(worker_ids)}") from e
            if any(i < 0 or i >= rec.hosts for i in wanted):
                raise invalid_argument(
                    f"worker ids {sorted(wanted)} out of range 0..{rec.hosts - 1}"
                )
            workers = [w for w in workers if int(w["index"]) in wanted]
        out = []
        for w in workers:
            items = []
            key_type, _, rest = str(w.get("host_key", "")).partition(" ")
            blob = rest.split()[0] if rest.split() else ""
            if blob:
                items.append({"namespace": HOSTKEYS_NAMESPACE, "key": key_type, "value": blob})
            items.append(
                {"namespace": EMULATOR_NAMESPACE, "key": "ssh-port", "value": str(w["ssh_port"])}
            )
            if query_path:
                items = [i for i in items if _matches_query(query_path, i)]
            out.append({"queryPath": query_path, "queryValue": {"items": items}})
        return out

    # ---------------------------------------------------------------- create

    def plan(self, parent: str, node_id: str, body: dict[str, Any]) -> NodePlan:
        return plan_node(parent, node_id, body, self._store.nodes)

    def _allocate_slot(self) -> int:
        from tpuctl.emulator.addresses import slots_in_use

        # not the address block of another emulator's live workers either
        used = {r.slot for r in self._store.nodes.values()} | slots_in_use()
        for slot in range(1, MAX_SLOTS + 1):
            if slot not in used:
                return slot
        raise ApiError(
            429,
            "RESOURCE_EXHAUSTED",
            f"the emulator holds at most {MAX_SLOTS} nodes; delete some first",
        )

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
        if faults.stocked_out(plan.zone) and faults.stockout_mode == "request":
            raise ApiError(429, "RESOURCE_EXHAUSTED", faults.stockout_message(plan.zone))
        rec = self.store(plan)
        op = self._ops.new(parent, "create", rec.name)
        rec.pending_op = op["name"]
        self._tasks.spawn(
            rec.name, self.finish_create(rec.name, delay=self._core.current_create_delay)
        )
        self._core.save()
        return op

    async def _start_workers(self, rec: NodeRecord) -> None:
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
        # fresh listeners: every worker reachable again, then the fault applies anew
        await self._reachability.restarted(rec.key)

    async def _restart_workers(self, rec: NodeRecord) -> None:
        try:
            await self._start_workers(rec)
        except Exception:  # a node whose workers cannot come back is unhealthy, not fatal
            log.exception("could not restart the workers of %s", rec.name)
            rec.resource["health"] = "TIMEOUT"

    async def finish_create(self, name: str, *, delay: float) -> None:
        await asyncio.sleep(delay)
        rec = self._store.nodes.get(name)
        if rec is None or rec.state != "CREATING":
            return
        zone = parse_location(name.rsplit("/nodes/", 1)[0])[1]
        faults = self._core.faults
        if faults.stocked_out(zone) and not rec.resource.get("queuedResource"):
            # as on GCP: the create operation fails with code 8 and the node is gone
            self._store.nodes.pop(name, None)
            self._ops.finish(
                rec.pending_op,
                error=(CODE_RESOURCE_EXHAUSTED, faults.stockout_message(zone)),
            )
            self._core.save()
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
            self._store.nodes.pop(name, None)
            self._ops.finish(
                rec.pending_op, error=(CODE_INTERNAL, f"could not start the workers: {e}")
            )
            self._core.save()
            return
        rec.resource["state"] = "READY"
        rec.resource["health"] = "HEALTHY"
        self._ops.finish(rec.pending_op, response=node_any(rec))
        rec.pending_op = None
        self._core.save()

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
        await asyncio.sleep(self._core.op_delay)
        rec = self._store.nodes.get(name)
        if rec is None or rec.state != "STOPPING":
            return
        await self._workers.stop_node(rec.key)
        rec.resource["state"] = "STOPPED"
        self._ops.finish(rec.pending_op, response=node_any(rec))
        rec.pending_op = None
        self._core.save()

    def start_node(self, name: str) -> dict[str, Any]:
        return self._begin(name, "start", "STOPPED", "STARTING", self._finish_start)

    async def _finish_start(self, name: str) -> None:
        await asyncio.sleep(self._core.op_delay)
        rec = self._store.nodes.get(name)
        if rec is None or rec.state != "STARTING":
            return
        try:
            await self._start_workers(rec)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("starting %s failed", name)
            rec.resource["state"] = "STOPPED"
            self._ops.finish(
                rec.pending_op, error=(CODE_INTERNAL, f"could not start the workers: {e}")
            )
            rec.pending_op = None
            self._core.save()
            return
        rec.resource["state"] = "READY"
        rec.resource["health"] = "HEALTHY"
        self._ops.finish(rec.pending_op, response=node_any(rec))
        rec.pending_op = None
        self._core.save()

    # ---------------------------------------------------------------- update

    def update_node(self, name: str, body: dict[str, Any], update_mask: str) -> dict[str, Any]:
        """Apply only the masked fields (at once, so new ssh-keys work immediately)."""
        rec = self.get_record(name)
        paths = update_paths(body, update_mask)
        if rec.state not in ("READY", "STOPPED"):
            raise failed_precondition(f"Node {name} is {rec.state}; it cannot be updated now")
        rec.resource = updated(rec.resource, body, paths)
        op = self._ops.new(name.rsplit("/nodes/", 1)[0], "update", name)
        op_name = op["name"]
        self._tasks.spawn_background(self._finish_update(name, op_name))
        self._core.save()
        return op

    async def _finish_update(self, name: str, op_name: str) -> None:
        await asyncio.sleep(self._core.op_delay)
        rec = self._store.nodes.get(name)
        if rec is None:
            self._ops.finish(op_name, error=(CODE_ABORTED, f"node {name} was deleted"))
        else:
            self._ops.finish(op_name, response=node_any(rec))
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


def _matches_query(query_path: str, item: dict[str, Any]) -> bool:
    """`hostkeys/` or `hostkeys` selects a namespace, `hostkeys/ssh-ed25519` one key."""
    ns, _, key = query_path.strip("/").partition("/")
    return item["namespace"] == ns and (not key or item["key"] == key)
