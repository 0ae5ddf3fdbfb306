"""A node as the API shows it: its resource with the workers' network endpoints (internal
address, and an external one when the node has external IPs), and its guest attributes (host
keys, hostname, the emulator's SSH port) -- both leaving out workers that have not registered
(the `missing-workers` fault)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from typing import Any

from tpuctl.emulator import addressing, catalog, netconfig
from tpuctl.emulator.errors import invalid_argument
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.resources import NODE_TYPE, NodeRecord

HOSTKEYS_NAMESPACE = "hostkeys"
HOSTNAME_NAMESPACE = "tpu"  # gcloud's IAP path reads the key `hostname` in any namespace
EMULATOR_NAMESPACE = "tpuctl-emulator"  # documented divergence: the worker's SSH port


def hostname(rec: NodeRecord, index: int) -> str:
    """A worker's VM name, as TPU VMs name theirs (`t1v-n-<8 hex>-w-<i>`); the instance name
    `gcloud compute start-iap-tunnel` takes."""
    digest = hashlib.sha256(rec.name.encode()).hexdigest()[:8]
    return f"t1v-n-{digest}-w-{index}"


def listed(rec: NodeRecord, faults: Faults) -> list[dict[str, Any]]:
    """The workers that registered, in worker order: all but the `missing-workers` last."""
    workers = sorted(rec.workers, key=lambda w: int(w["index"]))
    missing = faults.missing_workers(rec.name)
    return workers[: max(0, len(workers) - missing)]


def external_ip(rec: NodeRecord, index: int, faults: Faults) -> str | None:
    """A worker's external address: None without external IPs; in the flat network mode
    its one (loopback) address, in the cloud mode one of its own."""
    if not netconfig.primary(rec.resource).get("enableExternalIps"):
        return None
    if not faults.cloud_network:
        return addressing.internal_ip(rec.slot, index)
    return addressing.external_ip(rec.slot, index)


def render_node(rec: NodeRecord, faults: Faults) -> dict[str, Any]:
    """The node as the API shows it (enum names; the HTTP layer may turn them to ints)."""
    node = copy.deepcopy(rec.resource)
    if rec.workers and rec.state != "CREATING":
        endpoints = []
        for w in listed(rec, faults):
            ep: dict[str, Any] = {"ipAddress": w["ip"], "port": catalog.ENDPOINT_PORT}
            external = external_ip(rec, int(w["index"]), faults)
            if external:
                ep["accessConfig"] = {"externalIp": external}
            endpoints.append(ep)
        if endpoints:
            node["networkEndpoints"] = endpoints
    return node


def node_any(rec: NodeRecord, faults: Faults) -> dict[str, Any]:
    """The node as an operation's `response` (a google.protobuf.Any)."""
    return {"@type": NODE_TYPE, **render_node(rec, faults)}


def guest_attributes(rec: NodeRecord, faults: Faults, query_path: str = "",
                     worker_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One entry per registered worker (worker order): host keys, hostname, SSH port."""
    workers = listed(rec, faults)
    if worker_ids:
        try:
            wanted = {int(w) for w in worker_ids}
        except ValueError as e:
            raise invalid_argument(f"invalid worker id in {list(worker_ids)}") from e
        if any(i < 0 or i >= rec.hosts for i in wanted):
            raise invalid_argument(f"worker ids {sorted(wanted)} out of range 0..{rec.hosts - 1}")
        workers = [w for w in workers if int(w["index"]) in wanted]
    out = []
    for w in workers:
        items = []
        key_type, _, rest = str(w.get("host_key", "")).partition(" ")
        blob = rest.split()[0] if rest.split() else ""
        if blob:
            items.append({"namespace": HOSTKEYS_NAMESPACE, "key": key_type, "value": blob})
        items.append({"namespace": HOSTNAME_NAMESPACE, "key": "hostname",
                      "value": hostname(rec, int(w["index"]))})
        items.append(
            {"namespace": EMULATOR_NAMESPACE, "key": "ssh-port", "value": str(w["ssh_port"])}
        )
        if query_path:
            items = [i for i in items if _matches_query(query_path, i)]
        out.append({"queryPath": query_path, "queryValue": {"items": items}})
    return out


def _matches_query(query_path: str, item: dict[str, Any]) -> bool:
    """`hostkeys/` or `hostkeys` selects a namespace, `hostkeys/ssh-ed25519` one key."""
    ns, _, key = query_path.strip("/").partition("/")
    return item["namespace"] == ns and (not key or item["key"] == key)
