"""The emulator's resources (nodes, operations, queued resources) and their life cycles.

Resources are kept in the API's own JSON shape (camelCase, enum *names*) so that the HTTP
layer only re-encodes enums and paginates. Everything runs on one asyncio loop; state is
persisted as one JSON file in the state dir after every change (temp file + os.replace), so
a restarted emulator keeps its nodes and restarts the workers of READY ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from tpuctl.accelerators import AcceleratorType
from tpuctl.emulator import catalog
from tpuctl.emulator.faults import Faults

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
MAX_SLOTS = 254
MAX_DONE_OPERATIONS = 1000
QUEUE_POLL_SECONDS = 0.05  # how often a waiting queued resource looks for capacity again

TYPE_PREFIX = "type.googleapis.com/"
OPERATION_METADATA_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.OperationMetadata"
NODE_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.Node"
QUEUED_RESOURCE_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.QueuedResource"
EMPTY_TYPE = TYPE_PREFIX + "google.protobuf.Empty"

HOSTKEYS_NAMESPACE = "hostkeys"
EMULATOR_NAMESPACE = "tpuctl-emulator"  # documented divergence: the worker's SSH port

# TPU node and queued resource ids, as GCP enforces them.
RESOURCE_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")

# Fields a create request may carry (Node in the discovery doc); output-only ones are ignored.
NODE_INPUT_FIELDS = frozenset(
    {
        "acceleratorConfig",
        "acceleratorType",
        "bootDiskConfig",
        "cidrBlock",
        "dataDisks",
        "description",
        "labels",
        "metadata",
        "networkConfig",
        "networkConfigs",
        "runtimeVersion",
        "schedulingConfig",
        "serviceAccount",
        "shieldedInstanceConfig",
        "tags",
    }
)
NODE_OUTPUT_FIELDS = frozenset(
    {
        "apiVersion",
        "createTime",
        "health",
        "healthDescription",
        "id",
        "multisliceNode",
        "name",
        "networkEndpoints",
        "protectionTier",
        "queuedResource",
        "state",
        "symptoms",
        "upcomingMaintenance",
    }
)
# Fields that google-cloud-tpu 1.28 does not know: accepted on input, never echoed back.
NODE_UNKNOWN_TO_CLIENT = frozenset({"bootDiskConfig", "protectionTier", "upcomingMaintenance"})
# update_mask paths UpdateNode accepts.
UPDATABLE_PATHS = frozenset(
    {
        "description",
        "labels",
        "metadata",
        "tags",
        "dataDisks",
        "shieldedInstanceConfig",
        "networkConfig",
        "networkConfig.enableExternalIps",
        "schedulingConfig",
    }
)
QUEUED_RESOURCE_INPUT_FIELDS = frozenset(
    {"tpu", "spot", "guaranteed", "queueingPolicy", "reservationName"}
)
QUEUED_RESOURCE_OUTPUT_FIELDS = frozenset({"name", "createTime", "state"})


class ApiError(Exception):
    """An error the API answers with a Google error envelope."""

    def __init__(
        self,
        http_code: int,
        status: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message
        self.details = list(details)

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_code,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(400, "FAILED_PRECONDITION", message)


def not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Resource '{name}' was not found")


def already_exists(name: str) -> ApiError:
    return ApiError(409, "ALREADY_EXISTS", f"Resource '{name}' already exists")


# gRPC code numbers used in google.rpc.Status of failed operations.
CODE_ABORTED = 10
CODE_INTERNAL = 13
CODE_RESOURCE_EXHAUSTED = 8


class EmulatedWorkerLike(Protocol):
    """What `WorkerHost.start_node` returns per worker (see workers.EmulatedWorker)."""

    @property
    def index(self) -> int: ...
    @property
    def ip(self) -> str: ...
    @property
    def ssh_port(self) -> int: ...
    @property
    def host_key(self) -> str: ...


class WorkerHostLike(Protocol):
    """The part of `workers.WorkerHost` the state drives; tests may pass a fake."""

    async def start_node(
        self,
        node_id: str,
        slot: int,
        num_workers: int,
        chips_per_host: int,
        authorized_keys: Callable[[str], list[str]],
    ) -> Sequence[EmulatedWorkerLike]: ...

    async def stop_node(self, node_id: str) -> None: ...

    def remove_node(self, node_id: str) -> None: ...

    async def close(self) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_location(parent: str) -> tuple[str, str]:
    """`projects/p/locations/z` -> (p, z)."""
    parts = parent.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
        raise invalid_argument(f"invalid parent {parent!r}")
    return parts[1], parts[3]


def check_location(parent: str) -> tuple[str, str]:
    """Unknown zones answer 404 NOT_FOUND, as GCP does for locations it does not serve."""
    project, zone = parse_location(parent)
    if not catalog.is_known_zone(zone):
        raise ApiError(
            404, "NOT_FOUND", f"Location {parent} is not found or access is unauthorized."
        )
    return project, zone


def parse_ssh_keys(metadata: dict[str, str], user: str) -> list[str]:
    """Keys for `user` from GCP-style `ssh-keys` metadata (`user:ssh-ed25519 AAAA... c`)."""
    keys: list[str] = []
    for field_name in ("ssh-keys", "sshKeys"):
        for line in str(metadata.get(field_name, "")).splitlines():
            line = line.strip()
            if not line or ":" not in line:
                continue
            name, key = line.split(":", 1)
            key = key.strip()
            if name.strip() == user and key:
                keys.append(key)
    return keys


@dataclass
class NodeRecord:
    """A node: its API resource plus what only the emulator knows (slot, workers)."""

    name: str
    resource: dict[str, Any]
    slot: int
    key: str  # the WorkerHost's node id: unique across projects and zones
    hosts: int
    chips_per_host: int
    workers: list[dict[str, Any]] = field(default_factory=list)
    pending_op: str | None = None

    @property
    def state(self) -> str:
        return str(self.resource.get("state", "STATE_UNSPECIFIED"))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resource": self.resource,
            "slot": self.slot,
            "key": self.key,
            "hosts": self.hosts,
            "chips_per_host": self.chips_per_host,
            "workers": self.workers,
            "pending_op": self.pending_op,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeRecord:
        return cls(
            name=d["name"],
            resource=d["resource"],
            slot=int(d["slot"]),
            key=d["key"],
            hosts=int(d["hosts"]),
            chips_per_host=int(d["chips_per_host"]),
            workers=list(d.get("workers", [])),
            pending_op=d.get("pending_op"),
        )


@dataclass
class QueuedResourceRecord:
    name: str
    resource: dict[str, Any]
    node_names: list[str]
    pending_op: str | None = None

    @property
    def state(self) -> str:
        return str(self.resource.get("state", {}).get("state", "STATE_UNSPECIFIED"))

    def set_state(self, state: str, **data: Any) -> None:
        st: dict[str, Any] = {"state": state, "stateInitiator": "USER"}
        st.update(data)
        self.resource["state"] = st

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resource": self.resource,
            "node_names": self.node_names,
            "pending_op": self.pending_op,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QueuedResourceRecord:
        return cls(d["name"], d["resource"], list(d["node_names"]), d.get("pending_op"))


@dataclass
class _NodePlan:
    """A validated node create request, before anything is stored."""

    project: str
    zone: str
    node_id: str
    accelerator: AcceleratorType
    resource: dict[str, Any]


class EmulatorState:
    """All resources of one emulator and the tasks that move them through their states."""

    def __init__(
        self,
        state_dir: Path,
        workers: WorkerHostLike,
        *,
        create_delay: float = 0.5,
        op_delay: float | None = None,
        ssh_port: int = 0,
        faults: Faults | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.workers = workers
        self.create_delay = create_delay
        self.faults = faults if faults is not None else Faults()
        self.op_delay = create_delay / 4 if op_delay is None else op_delay
        self.ssh_port = ssh_port
        self.nodes: dict[str, NodeRecord] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.queued_resources: dict[str, QueuedResourceRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # in-flight transition per resource
        self._background: set[asyncio.Task[None]] = set()
        self._pending_plans: dict[str, list[_NodePlan]] = {}  # queued resource -> its nodes
        self._unreachable: dict[str, set[int]] = {}  # node key -> workers made unreachable
        self._reachability_lock = asyncio.Lock()

    @property
    def current_create_delay(self) -> float:
        """How long a node stays CREATING: the `create-delay` fault, else `--create-delay`."""
        return self.faults.create_delay(self.create_delay)

    # ---------------------------------------------------------------- persistence

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @staticmethod
    def saved_ssh_port(state_dir: Path) -> int | None:
        """The SSH port a previous run used, so restarted workers keep their addresses."""
        try:
            data = json.loads((Path(state_dir) / STATE_FILE).read_text())
            port = int(data.get("ssh_port") or 0)
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        return port or None

    def load(self) -> None:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable state file %s: %s", self.state_file, e)
            return
        for d in data.get("nodes", []):
            rec = NodeRecord.from_json(d)
            self.nodes[rec.name] = rec
        for d in data.get("queued_resources", []):
            qr = QueuedResourceRecord.from_json(d)
            self.queued_resources[qr.name] = qr
        for op in data.get("operations", []):
            self.operations[op["name"]] = op

    def save(self) -> None:
        self._prune_operations()
        data = {
            "version": STATE_VERSION,
            "ssh_port": self.ssh_port,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "queued_resources": [q.to_json() for q in self.queued_resources.values()],
            "operations": list(self.operations.values()),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # nodes' ssh-keys
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    def _prune_operations(self) -> None:
        done = [name for name, op in self.operations.items() if op.get("done")]
        for name in done[: max(0, len(done) - MAX_DONE_OPERATIONS)]:
            del self.operations[name]

    async def resume(self) -> None:
        """Pick up where a previous run stopped: restart workers, finish transitions."""
        restarts = []
        for rec in list(self.nodes.values()):
            state = rec.state
            if state == "CREATING":
                delay = self.current_create_delay
                self._spawn(rec.name, self._finish_create(rec.name, delay=delay))
            elif state == "STARTING":
                self._spawn(rec.name, self._finish_start(rec.name))
            elif state == "DELETING":
                self._spawn(rec.name, self._finish_delete(rec.name))
            elif state == "STOPPING":
                self._spawn(rec.name, self._finish_stop(rec.name))
            elif state == "READY":
                restarts.append(self._restart_workers(rec))
        if restarts:
            await asyncio.gather(*restarts)
        owned = {r.pending_op for r in self.nodes.values()}
        owned |= {q.pending_op for q in self.queued_resources.values()}
        for op in self.operations.values():  # e.g. updates, which finish on their own
            if not op.get("done") and op["name"] not in owned:
                target = self.nodes.get(op["metadata"].get("target", ""))
                if target is not None and op["metadata"].get("verb") == "update":
                    self._finish_operation(op["name"], response=self._node_any(target))
                else:
                    self._finish_operation(
                        op["name"], error=(CODE_ABORTED, "the emulator restarted meanwhile")
                    )
        for qr in list(self.queued_resources.values()):
            if qr.state in ("ACCEPTED", "PROVISIONING", "WAITING_FOR_RESOURCES"):
                self._spawn(qr.name, self._provision_queued_resource(qr.name))
            elif qr.state == "DELETING":
                self._spawn(qr.name, self._finish_delete_queued_resource(qr.name))
        self.save()

    async def _restart_workers(self, rec: NodeRecord) -> None:
        try:
            await self._start_workers(rec)
        except Exception:  # a node whose workers cannot come back is unhealthy, not fatal
            log.exception("could not restart the workers of %s", rec.name)
            rec.resource["health"] = "TIMEOUT"

    async def close(self) -> None:
        """Cancel transitions (they resume on the next start), stop every worker."""
        tasks = list(self._tasks.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.save()
        await self.workers.close()

    # ---------------------------------------------------------------- tasks

    def _spawn(self, key: str, coro: Any) -> None:
        """Run the one in-flight transition of resource `key`."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]
            if not t.cancelled() and t.exception() is not None:
                log.error("emulator task for %s failed", key, exc_info=t.exception())

        task.add_done_callback(done)

    def _spawn_background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _cancel_task(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---------------------------------------------------------------- operations

    def _new_operation(self, parent: str, verb: str, target: str) -> dict[str, Any]:
        ms = int(time.time() * 1000)
        op_id = f"operation-{ms}-{secrets.token_hex(7)[:13]}-{secrets.token_hex(4)}-" + (
            secrets.token_hex(4)
        )
        op: dict[str, Any] = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": OPERATION_METADATA_TYPE,
                "createTime": now_rfc3339(),
                "target": target,
                "verb": verb,
                "cancelRequested": False,
                "apiVersion": "v2",
            },
            "done": False,
        }
        self.operations[op["name"]] = op
        return op

    def _finish_operation(
        self,
        op_name: str | None,
        *,
        response: dict[str, Any] | None = None,
        error: tuple[int, str] | None = None,
    ) -> None:
        op = self.operations.get(op_name or "")
        if op is None or op.get("done"):
            return
        op["done"] = True
        op["metadata"]["endTime"] = now_rfc3339()
        if error is not None:
            op["error"] = {"code": error[0], "message": error[1]}
        else:
            op["response"] = response if response is not None else {"@type": EMPTY_TYPE}

    def get_operation(self, name: str) -> dict[str, Any]:
        op = self.operations.get(name)
        if op is None:
            raise not_found(name)
        return op

    def list_operations(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/operations/"
        return [op for name, op in self.operations.items() if name.startswith(prefix)]

    def delete_operation(self, name: str) -> None:
        self.get_operation(name)
        del self.operations[name]
        self.save()

    def cancel_operation(self, name: str) -> None:
        """Recorded only: like many GCP operations, these cannot really be cancelled."""
        op = self.get_operation(name)
        if not op.get("done"):
            op["metadata"]["cancelRequested"] = True
            self.save()

    # ---------------------------------------------------------------- nodes: reads

    def get_node_record(self, name: str) -> NodeRecord:
        parent = name.rsplit("/nodes/", 1)[0]
        check_location(parent)
        rec = self.nodes.get(name)
        if rec is None:
            raise not_found(name)
        return rec

    def render_node(self, rec: NodeRecord) -> dict[str, Any]:
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

    def get_node(self, name: str) -> dict[str, Any]:
        return self.render_node(self.get_node_record(name))

    def list_nodes(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/nodes/"
        return [self.render_node(r) for n, r in self.nodes.items() if n.startswith(prefix)]

    def authorized_keys(self, name: str, user: str) -> list[str]:
        """Asked by the worker host at each SSH auth attempt: the node's *current* keys."""
        rec = self.nodes.get(name)
        if rec is None:
            return []
        return parse_ssh_keys(rec.resource.get("metadata", {}), user)

    def guest_attributes(
        self, name: str, query_path: str = "", worker_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """One entry per worker (worker order): host keys, plus the emulator's SSH port."""
        rec = self.get_node_record(name)
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

    # ---------------------------------------------------------------- nodes: create

    def _plan_node(self, parent: str, node_id: str, body: dict[str, Any]) -> _NodePlan:
        """Validate a create request like GCP does, without storing anything."""
        project, zone = check_location(parent)
        if not node_id:
            raise invalid_argument("nodeId is required")
        if not RESOURCE_ID_RE.match(node_id):
            raise invalid_argument(
                f"Invalid node id {node_id!r}: it must be 1-63 lowercase letters, digits or "
                "hyphens, start with a letter and not end with a hyphen"
            )
        if not isinstance(body, dict):
            raise invalid_argument("the node must be a JSON object")
        unknown = sorted(set(body) - NODE_INPUT_FIELDS - NODE_OUTPUT_FIELDS)
        if unknown:
            raise invalid_argument(
                f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'node': "
                "Cannot find field."
            )
        name = f"{parent}/nodes/{node_id}"
        if name in self.nodes:
            raise already_exists(name)

        acc = self._accelerator_of(zone, body)
        runtime = body.get("runtimeVersion")
        if not runtime:
            raise invalid_argument("runtimeVersion is required")
        if runtime not in catalog.runtime_versions(zone):
            raise invalid_argument(f"Runtime version {runtime!r} is not supported in zone {zone}")
        labels = _string_map(body.get("labels", {}), "labels")
        metadata = _string_map(body.get("metadata", {}), "metadata")
        sched_in = body.get("schedulingConfig") or {}
        if not isinstance(sched_in, dict):
            raise invalid_argument("schedulingConfig must be an object")
        sched = {k: bool(sched_in.get(k, False)) for k in ("preemptible", "spot", "reserved")}
        if sched["spot"] and sched["preemptible"]:
            raise invalid_argument("a node cannot be both spot and preemptible")
        network = dict(body.get("networkConfig") or {})
        network.setdefault("network", f"projects/{project}/global/networks/default")
        network.setdefault(
            "subnetwork",
            f"projects/{project}/regions/{catalog.region_of(zone)}/subnetworks/default",
        )
        network.setdefault("enableExternalIps", False)
        resource: dict[str, Any] = {
            "name": name,
            "id": str(random.randrange(10**18, 9 * 10**18)),
            "acceleratorType": acc.name,
            "acceleratorConfig": {"type": acc.generation.api_type, "topology": acc.topology},
            "runtimeVersion": runtime,
            "state": "CREATING",
            "createTime": now_rfc3339(),
            "networkConfig": network,
            "cidrBlock": str(body.get("cidrBlock") or "10.128.0.0/20"),
            "serviceAccount": body.get("serviceAccount")
            or {
                "email": "default",
                "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            },
            "schedulingConfig": sched,
            "apiVersion": "V2",
        }
        for key in ("description",):
            if body.get(key):
                resource[key] = str(body[key])
        if labels:
            resource["labels"] = labels
        if metadata:
            resource["metadata"] = metadata
        for key in ("tags", "dataDisks", "shieldedInstanceConfig", "networkConfigs"):
            if body.get(key):
                resource[key] = copy.deepcopy(body[key])
        return _NodePlan(project, zone, node_id, acc, resource)

    def _accelerator_of(self, zone: str, body: dict[str, Any]) -> AcceleratorType:
        name = body.get("acceleratorType")
        config = body.get("acceleratorConfig")
        acc: AcceleratorType | None = None
        if name:
            acc = catalog.find_accelerator(zone, str(name))
            if acc is None:
                raise invalid_argument(f"Accelerator type {name!r} is not available in zone {zone}")
        if config:
            if not isinstance(config, dict):
                raise invalid_argument("acceleratorConfig must be an object")
            api_type = catalog.decode_enum(catalog.ACCELERATOR_CONFIG_TYPE, config.get("type"))
            topology = str(config.get("topology", ""))
            from_config = (
                catalog.accelerator_from_config(zone, api_type, topology) if api_type else None
            )
            if from_config is None:
                raise invalid_argument(
                    f"Accelerator config {config!r} is not available in zone {zone}"
                )
            if acc is not None and acc.name != from_config.name:
                raise invalid_argument(
                    "acceleratorType and acceleratorConfig describe different accelerators"
                )
            acc = from_config
        if acc is None:
            raise invalid_argument("acceleratorType or acceleratorConfig is required")
        return acc

    def _allocate_slot(self) -> int:
        used = {r.slot for r in self.nodes.values()}
        for slot in range(1, MAX_SLOTS + 1):
            if slot not in used:
                return slot
        raise ApiError(
            429,
            "RESOURCE_EXHAUSTED",
            f"the emulator holds at most {MAX_SLOTS} nodes; delete some first",
        )

    def _store_node(self, plan: _NodePlan, queued_resource: str | None = None) -> NodeRecord:
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
        self.nodes[rec.name] = rec
        return rec

    def create_node(self, parent: str, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
        plan = self._plan_node(parent, node_id, body)
        if self.faults.stocked_out(plan.zone) and self.faults.stockout_mode == "request":
            raise ApiError(429, "RESOURCE_EXHAUSTED", self.faults.stockout_message(plan.zone))
        rec = self._store_node(plan)
        op = self._new_operation(parent, "create", rec.name)
        rec.pending_op = op["name"]
        self._spawn(rec.name, self._finish_create(rec.name, delay=self.current_create_delay))
        self.save()
        return op

    async def _start_workers(self, rec: NodeRecord) -> None:
        name = rec.name
        started = await self.workers.start_node(
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
        self._unreachable.pop(rec.key, None)  # fresh listeners: every worker reachable again
        await self.apply_unreachable_workers()

    async def _finish_create(self, name: str, *, delay: float) -> None:
        await asyncio.sleep(delay)
        rec = self.nodes.get(name)
        if rec is None or rec.state != "CREATING":
            return
        zone = parse_location(name.rsplit("/nodes/", 1)[0])[1]
        if self.faults.stocked_out(zone) and not rec.resource.get("queuedResource"):
            # as on GCP: the create operation fails with code 8 and the node is gone
            self.nodes.pop(name, None)
            self._finish_operation(
                rec.pending_op,
                error=(CODE_RESOURCE_EXHAUSTED, self.faults.stockout_message(zone)),
            )
            self.save()
            return
        try:
            await self._start_workers(rec)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("creating %s failed", name)
            with contextlib.suppress(Exception):
                await self.workers.stop_node(rec.key)
                self.workers.remove_node(rec.key)
            self.nodes.pop(name, None)
            self._finish_operation(
                rec.pending_op, error=(CODE_INTERNAL, f"could not start the workers: {e}")
            )
            self.save()
            return
        rec.resource["state"] = "READY"
        rec.resource["health"] = "HEALTHY"
        self._finish_operation(rec.pending_op, response=self._node_any(rec))
        rec.pending_op = None
        self.save()

    def _node_any(self, rec: NodeRecord) -> dict[str, Any]:
        return {"@type": NODE_TYPE, **self.render_node(rec)}

    # ---------------------------------------------------------------- nodes: stop/start

    def _begin(self, name: str, op_verb: str, needs: str, becomes: str,
               finish: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
        """Start a node transition (stop, start): check the state, open its operation."""
        rec = self.get_node_record(name)
        if rec.state != needs:
            done = {"stop": "stopped", "start": "started"}[op_verb]
            raise failed_precondition(
                f"Node {name} is {rec.state}; only a {needs} node can be {done}"
            )
        rec.resource["state"] = becomes
        if op_verb == "stop":
            rec.resource.pop("health", None)
        op = self._new_operation(name.rsplit("/nodes/", 1)[0], op_verb, name)
        rec.pending_op = op["name"]
        self._spawn(name, finish(name))
        self.save()
        return op

    def stop_node(self, name: str) -> dict[str, Any]:
        return self._begin(name, "stop", "READY", "STOPPING", self._finish_stop)

    async def _finish_stop(self, name: str) -> None:
        await asyncio.sleep(self.op_delay)
        rec = self.nodes.get(name)
        if rec is None or rec.state != "STOPPING":
            return
        await self.workers.stop_node(rec.key)
        rec.resource["state"] = "STOPPED"
        self._finish_operation(rec.pending_op, response=self._node_any(rec))
        rec.pending_op = None
        self.save()

    def start_node(self, name: str) -> dict[str, Any]:
        return self._begin(name, "start", "STOPPED", "STARTING", self._finish_start)

    async def _finish_start(self, name: str) -> None:
        await asyncio.sleep(self.op_delay)
        rec = self.nodes.get(name)
        if rec is None or rec.state != "STARTING":
            return
        try:
            await self._start_workers(rec)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("starting %s failed", name)
            rec.resource["state"] = "STOPPED"
            self._finish_operation(
                rec.pending_op, error=(CODE_INTERNAL, f"could not start the workers: {e}")
            )
            rec.pending_op = None
            self.save()
            return
        rec.resource["state"] = "READY"
        rec.resource["health"] = "HEALTHY"
        self._finish_operation(rec.pending_op, response=self._node_any(rec))
        rec.pending_op = None
        self.save()

    # ---------------------------------------------------------------- nodes: update

    def update_node(self, name: str, body: dict[str, Any], update_mask: str) -> dict[str, Any]:
        """Apply only the masked fields (at once, so new ssh-keys work immediately)."""
        rec = self.get_node_record(name)
        if not isinstance(body, dict):
            raise invalid_argument("the node must be a JSON object")
        paths = [_camel(p.strip()) for p in update_mask.split(",") if p.strip()]
        if not paths:
            raise invalid_argument("updateMask is required")
        bad = [p for p in paths if p not in UPDATABLE_PATHS]
        if bad:
            raise invalid_argument(f"field {bad[0]!r} cannot be updated")
        if rec.state not in ("READY", "STOPPED"):
            raise failed_precondition(f"Node {name} is {rec.state}; it cannot be updated now")
        new = copy.deepcopy(rec.resource)
        for path in paths:
            if path == "networkConfig.enableExternalIps":
                value = bool((body.get("networkConfig") or {}).get("enableExternalIps", False))
                new.setdefault("networkConfig", {})["enableExternalIps"] = value
                continue
            if path in ("labels", "metadata"):
                value_map = _string_map(body.get(path, {}), path)
                if value_map:
                    new[path] = value_map
                else:
                    new.pop(path, None)
                continue
            if path in body and body[path] not in (None, "", [], {}):
                new[path] = copy.deepcopy(body[path])
            else:
                new.pop(path, None)
        rec.resource = new
        op = self._new_operation(name.rsplit("/nodes/", 1)[0], "update", name)
        op_name = op["name"]
        self._spawn_background(self._finish_update(name, op_name))
        self.save()
        return op

    async def _finish_update(self, name: str, op_name: str) -> None:
        await asyncio.sleep(self.op_delay)
        rec = self.nodes.get(name)
        if rec is None:
            self._finish_operation(op_name, error=(CODE_ABORTED, f"node {name} was deleted"))
        else:
            self._finish_operation(op_name, response=self._node_any(rec))
        self.save()

    # ---------------------------------------------------------------- nodes: delete

    def delete_node(self, name: str) -> dict[str, Any]:
        rec = self.get_node_record(name)
        if rec.state == "DELETING":
            raise failed_precondition(f"Node {name} is already being deleted")
        op = self._new_operation(name.rsplit("/nodes/", 1)[0], "delete", name)
        self._begin_delete(rec, op["name"])
        self.save()
        return op

    def _begin_delete(self, rec: NodeRecord, op_name: str) -> None:
        previous = self._tasks.get(rec.name)
        aborted_op = rec.pending_op
        rec.resource["state"] = "DELETING"
        rec.resource.pop("health", None)
        rec.pending_op = op_name
        self._spawn(rec.name, self._finish_delete(rec.name, previous, aborted_op))

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
            self._finish_operation(
                aborted_op, error=(CODE_ABORTED, f"node {name} was deleted meanwhile")
            )
        await asyncio.sleep(self.op_delay)
        rec = self.nodes.get(name)
        if rec is None:
            return
        await self.workers.stop_node(rec.key)
        self.workers.remove_node(rec.key)
        del self.nodes[name]
        self._finish_operation(rec.pending_op)
        qr_name = rec.resource.get("queuedResource")
        qr = self.queued_resources.get(qr_name or "")
        if qr is not None and qr.state in ("ACTIVE", "PROVISIONING"):
            qr.set_state("SUSPENDED")
        self.save()

    # ---------------------------------------------------------------- faults

    async def preempt_node(self, name: str) -> dict[str, Any]:
        """Fault injection: the node goes PREEMPTED and its workers die, as a spot VM would."""
        rec = self.get_node_record(name)
        if rec.state not in ("READY", "STARTING", "CREATING"):
            raise failed_precondition(f"Node {name} is {rec.state}; it cannot be preempted")
        await self._cancel_task(name)
        if rec.pending_op:
            self._finish_operation(rec.pending_op, error=(CODE_ABORTED, "node preempted"))
            rec.pending_op = None
        await self.workers.stop_node(rec.key)
        rec.resource["state"] = "PREEMPTED"
        rec.resource.pop("health", None)
        qr = self.queued_resources.get(rec.resource.get("queuedResource") or "")
        if qr is not None and qr.state in ("ACTIVE", "PROVISIONING"):
            qr.set_state("SUSPENDED", stateInitiator="SERVICE")
        self.save()
        return self.render_node(rec)

    def schedule_preempt(self, name: str, after: float) -> dict[str, Any]:
        """Fault injection: preempt the node `after` seconds from now (a server-side timer);
        a node that is no longer preemptible by then is left alone."""
        self.get_node_record(name)  # 404 now, not silently later

        async def later() -> None:
            await asyncio.sleep(after)
            try:
                await self.preempt_node(name)
            except ApiError as e:
                log.warning("scheduled preemption of %s skipped: %s", name, e.message)

        self._spawn_background(later())
        return {"name": name, "preemptAfterSeconds": after}

    async def apply_unreachable_workers(self) -> None:
        """Make the workers named by the `unreachable-workers` fault unreachable (listener
        closed, connections dropped) and every other worker reachable again."""
        set_reachable = getattr(self.workers, "set_reachable", None)
        if set_reachable is None:  # a fake worker host
            return
        async with self._reachability_lock:
            for rec in list(self.nodes.values()):
                if not rec.workers or rec.state not in ("READY", "CREATING", "STARTING"):
                    continue
                want = self.faults.unreachable(rec.name, len(rec.workers))
                have = self._unreachable.get(rec.key, set())
                for index in sorted(want ^ have):
                    try:
                        await set_reachable(rec.key, index, index not in want)
                    except (KeyError, IndexError):  # its workers are not running (any more)
                        continue
                    except OSError as e:
                        log.warning("worker %d of %s: cannot reopen: %s", index, rec.name, e)
                        continue
                    if index in want:
                        have.add(index)
                    else:
                        have.discard(index)
                if have:
                    self._unreachable[rec.key] = have
                else:
                    self._unreachable.pop(rec.key, None)

    def drop_connections(self, name: str, worker: int | None = None) -> dict[str, Any]:
        """Fault injection: cut the SSH connections of one worker (or all) mid-stream, as a
        flaky network would; the workers and their processes live on."""
        rec = self.get_node_record(name)
        drop = getattr(self.workers, "drop_connections", None)
        if drop is None:
            raise failed_precondition("this worker host cannot drop connections")
        indices = range(len(rec.workers)) if worker is None else [worker]
        for i in indices:
            if not 0 <= i < len(rec.workers):
                raise invalid_argument(f"worker {i} does not exist")
            drop(rec.key, i)
        return {"dropped": list(indices)}

    # ---------------------------------------------------------------- queued resources

    def get_queued_resource(self, name: str) -> dict[str, Any]:
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        return copy.deepcopy(qr.resource)

    def list_queued_resources(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        prefix = parent + "/queuedResources/"
        return [
            copy.deepcopy(q.resource)
            for n, q in self.queued_resources.items()
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
        if name in self.queued_resources:
            raise already_exists(name)
        specs = (body.get("tpu") or {}).get("nodeSpec") or []
        if not isinstance(specs, list) or not specs:
            raise invalid_argument("tpu.nodeSpec is required")
        plans: list[_NodePlan] = []
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
                plans.append(self._plan_node(parent, node_id, node))
        if len({p.node_id for p in plans}) != len(plans):
            raise invalid_argument("duplicate node ids in tpu.nodeSpec")
        resource: dict[str, Any] = {
            "name": name,
            "createTime": now_rfc3339(),
            **{k: copy.deepcopy(body[k]) for k in QUEUED_RESOURCE_INPUT_FIELDS if k in body},
        }
        qr = QueuedResourceRecord(name, resource, [p.resource["name"] for p in plans])
        qr.set_state("ACCEPTED")
        self.queued_resources[name] = qr
        self._pending_plans[name] = plans
        op = self._new_operation(parent, "create", name)
        self._finish_operation(
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(resource)}
        )
        self._spawn(name, self._provision_queued_resource(name))
        self.save()
        return op

    async def _provision_queued_resource(self, name: str) -> None:
        """ACCEPTED -> PROVISIONING (nodes created) -> ACTIVE once every node is READY."""
        await asyncio.sleep(self.op_delay)
        qr = self.queued_resources.get(name)
        if qr is None:
            return
        zone = parse_location(name.rsplit("/queuedResources/", 1)[0])[1]
        while qr.state in ("ACCEPTED", "WAITING_FOR_RESOURCES") and self.faults.stocked_out(zone):
            if qr.state != "WAITING_FOR_RESOURCES":
                qr.set_state("WAITING_FOR_RESOURCES", stateInitiator="SERVICE")
                self.save()
            await asyncio.sleep(QUEUE_POLL_SECONDS)
            if self.queued_resources.get(name) is not qr:
                return
        if qr.state in ("ACCEPTED", "WAITING_FOR_RESOURCES"):
            plans = self._pending_plans.pop(name, None)
            try:
                if plans is None:  # after a restart or a reset: plan again from the request
                    plans = self._replan(qr)
                for plan in plans:
                    if plan.resource["name"] in self.nodes:
                        raise already_exists(plan.resource["name"])
                for plan in plans:
                    rec = self._store_node(plan, queued_resource=name)
                    delay = self.current_create_delay
                    self._spawn(rec.name, self._finish_create(rec.name, delay=delay))
            except ApiError as e:
                qr.set_state("FAILED", failedData={"error": {"code": 9, "message": e.message}})
                self.save()
                return
            qr.set_state("PROVISIONING")
            self.save()
        while self.queued_resources.get(name) is qr and qr.state == "PROVISIONING":
            recs = [self.nodes.get(n) for n in qr.node_names]
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
            await asyncio.sleep(min(0.05, self.create_delay / 4 or 0.01))
        self.save()

    def _replan(self, qr: QueuedResourceRecord) -> list[_NodePlan]:
        parent, qr_id = qr.name.split("/queuedResources/", 1)
        plans = []
        for spec in (qr.resource.get("tpu") or {}).get("nodeSpec") or []:
            node = dict(spec.get("node") or {})
            if "spot" in qr.resource:
                node["schedulingConfig"] = {**(node.get("schedulingConfig") or {}), "spot": True}
            for node_id in _spec_node_ids(spec, qr_id):
                plans.append(self._plan_node(parent, node_id, node))
        return plans

    def delete_queued_resource(self, name: str, force: bool = False) -> dict[str, Any]:
        """Like GCP: a queued resource whose nodes still exist needs `force` to go."""
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        if qr.state == "DELETING":
            raise failed_precondition(f"Queued resource {name} is already being deleted")
        live = [n for n in qr.node_names if n in self.nodes]
        if live and not force:
            raise failed_precondition(
                f"Queued resource {name} still has node(s) {', '.join(live)}: delete them "
                "first or pass force=true"
            )
        parent = name.rsplit("/queuedResources/", 1)[0]
        op = self._new_operation(parent, "delete", name)
        qr.pending_op = op["name"]
        qr.set_state("DELETING")
        self._pending_plans.pop(name, None)
        provisioning = self._tasks.pop(name, None)
        if provisioning is not None:
            provisioning.cancel()
        for node_name in live:
            rec = self.nodes[node_name]
            if rec.state != "DELETING":
                node_op = self._new_operation(parent, "delete", node_name)
                self._begin_delete(rec, node_op["name"])
        self._spawn(name, self._finish_delete_queued_resource(name))
        self.save()
        return op

    async def _finish_delete_queued_resource(self, name: str) -> None:
        await asyncio.sleep(self.op_delay)
        qr = self.queued_resources.get(name)
        if qr is None:
            return
        while any(n in self.nodes for n in qr.node_names):
            await asyncio.sleep(0.02)
        del self.queued_resources[name]
        self._finish_operation(qr.pending_op)
        self.save()

    def reset_queued_resource(self, name: str) -> dict[str, Any]:
        """SUSPENDED/FAILED -> ACCEPTED: provision the nodes again."""
        check_location(name.rsplit("/queuedResources/", 1)[0])
        qr = self.queued_resources.get(name)
        if qr is None:
            raise not_found(name)
        if qr.state not in ("SUSPENDED", "FAILED"):
            raise failed_precondition(f"Queued resource {name} is {qr.state}; it cannot be reset")
        if any(n in self.nodes for n in qr.node_names):
            raise failed_precondition(f"Queued resource {name} still has nodes; delete them first")
        qr.set_state("ACCEPTED")
        op = self._new_operation(name.rsplit("/queuedResources/", 1)[0], "reset", name)
        self._finish_operation(
            op["name"], response={"@type": QUEUED_RESOURCE_TYPE, **copy.deepcopy(qr.resource)}
        )
        self._spawn(name, self._provision_queued_resource(name))
        self.save()
        return op


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


def _matches_query(query_path: str, item: dict[str, Any]) -> bool:
    """`hostkeys/` or `hostkeys` selects a namespace, `hostkeys/ssh-ed25519` one key."""
    ns, _, key = query_path.strip("/").partition("/")
    return item["namespace"] == ns and (not key or item["key"] == key)


def _camel(path: str) -> str:
    parts = path.split(".")
    out = []
    for part in parts:
        head, *rest = part.split("_")
        out.append(head + "".join(r[:1].upper() + r[1:] for r in rest))
    return ".".join(out)


def _string_map(value: Any, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid_argument(f"{field_name} must map strings to strings")
    return dict(value)
