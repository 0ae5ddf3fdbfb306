"""Each worker's GCE metadata server, as a TPU VM's processes read it
(`http://metadata.google.internal/computeMetadata/v1/...` with `Metadata-Flavor: Google`):
`instance/attributes/` with the TPU ones (`agent-worker-number`, `accelerator-type`,
`worker-network-endpoints` as `unknown:unknown:IP,...` over internal addresses in worker
order, `tpu-env` as `KEY: 'value'` lines) and the node's own metadata, `instance/hostname`,
`instance/zone`, `instance/network-interfaces/0/ip` (and its external IP), `project/...`.

There is no 169.254.169.254 on loopback: workers get `GCE_METADATA_HOST` and
`GCE_METADATA_IP` (which JAX and google-auth read instead of metadata.google.internal) naming
`127.0.0.1:API_PORT/metadata/<node>/<worker>/<signature>`, served next to the API without its
token: the signature (an HMAC under this run's token) lets a worker's processes in and nobody
who could not read their environment. The `missing-workers=NODE:N:blank` form leaves the
last N workers' TPU attributes blank (empty values), as a host that never registered.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from tpuctl.emulator import netconfig
from tpuctl.emulator.auth import METADATA_PREFIX as PREFIX
from tpuctl.emulator.calls import STATE_KEY
from tpuctl.emulator.nodeviews import external_ip, hostname
from tpuctl.emulator.resources import NodeRecord, parse_location

_FLAVOR = {"Metadata-Flavor": "Google"}
_TPU_KEYS = ("agent-worker-number", "accelerator-type", "worker-network-endpoints", "tpu-env")


def signature(key: str, node_id: str, index: int) -> str:
    return hmac.new(key.encode(), f"{node_id}/{index}".encode(), hashlib.sha256).hexdigest()[:32]


def address(base: str, key: str, node_id: str, index: int) -> str:
    """What GCE_METADATA_HOST is on one worker (`base`: 127.0.0.1:API_PORT)."""
    return f"{base}{PREFIX}{node_id}/{index}/{signature(key, node_id, index)}"


def tpu_attributes(rec: NodeRecord, index: int) -> dict[str, str]:
    zone = parse_location(rec.name.rsplit("/nodes/", 1)[0])[1]
    ips = [w["ip"] for w in sorted(rec.workers, key=lambda w: int(w["index"]))]
    acc = str(rec.resource.get("acceleratorType", ""))
    topology = str((rec.resource.get("acceleratorConfig") or {}).get("topology", ""))
    sched = rec.resource.get("schedulingConfig") or {}
    preemptible = bool(sched.get("spot") or sched.get("preemptible"))
    env = {"ACCELERATOR_TYPE": acc, "NODE_ID": rec.name.rsplit("/", 1)[1], "TOPOLOGY": topology,
           "WORKER_ID": str(index), "ZONE": zone, "PREEMPTIBLE": str(preemptible).lower()}
    if rec.megascale:  # a multislice node: what JAX's multislice cluster detection reads
        env.update(MEGASCALE_COORDINATOR_ADDRESS=str(rec.megascale["coordinator"]),
                   MEGASCALE_NUM_SLICES=str(rec.megascale["numSlices"]),
                   MEGASCALE_SLICE_ID=str(rec.megascale["sliceId"]),
                   MEGASCALE_PORT=str(rec.megascale["port"]))
    return {
        "agent-worker-number": str(index),
        "accelerator-type": acc,
        "worker-network-endpoints": ",".join(f"unknown:unknown:{ip}" for ip in ips),
        "tpu-env": "".join(f"{k}: '{v}'\n" for k, v in sorted(env.items())),
    }


def _values(request: web.Request, rec: NodeRecord, index: int) -> dict[str, str]:
    """Every path under computeMetadata/v1/ this worker answers, and its value."""
    state = request.app[STATE_KEY]
    project, zone = parse_location(rec.name.rsplit("/nodes/", 1)[0])
    attrs = dict(rec.resource.get("metadata") or {})
    tpu = tpu_attributes(rec, index)
    missing = state.faults.missing_workers(rec.name, blank=True)
    if index >= rec.hosts - missing:
        tpu = dict.fromkeys(tpu, "")
    attrs.update(tpu)
    internal = next(w["ip"] for w in rec.workers if int(w["index"]) == index)
    out = {f"instance/attributes/{k}": v for k, v in attrs.items()}
    out["instance/attributes/"] = "".join(f"{k}\n" for k in sorted(attrs))
    out.update({
        "instance/hostname": f"{hostname(rec, index)}.{zone}.c.{project}.internal",
        "instance/name": hostname(rec, index),
        "instance/id": str(rec.resource.get("id", "")),
        "instance/zone": f"projects/{project}/zones/{zone}",
        "instance/network-interfaces/0/ip": internal,
        "instance/network-interfaces/0/network": netconfig.primary(rec.resource).get(
            "network", ""),
        "instance/tags": str(rec.resource.get("tags", [])).replace("'", '"'),
        "project/project-id": project,
    })
    sched = rec.resource.get("schedulingConfig") or {}
    out["instance/scheduling/preemptible"] = "TRUE" if (
        sched.get("spot") or sched.get("preemptible")) else "FALSE"
    account = rec.resource.get("serviceAccount") or {}
    if account.get("email"):  # who the VM acts as (no tokens here: docs/emulator.md)
        sa = "instance/service-accounts/default/"
        out[sa + "email"] = str(account["email"])
        out[sa + "scopes"] = "".join(f"{x}\n" for x in account.get("scope") or [])
        out["instance/service-accounts/"] = f"default/\n{account['email']}/\n"
    ext = external_ip(rec, index, state.faults)
    if ext:
        out["instance/network-interfaces/0/access-configs/0/external-ip"] = ext
    for k, v in state.projects.metadata(project).items():
        out[f"project/attributes/{k}"] = v
    return out


async def handle(request: web.Request) -> web.StreamResponse:
    """GET PREFIX<node>/<worker>/<signature>/[computeMetadata/v1/<path>]."""
    state = request.app[STATE_KEY]
    parts = request.path[len(PREFIX):].split("/", 3)
    access = state.fabric.metadata
    if len(parts) < 3 or access is None or not parts[1].isdigit():
        raise web.HTTPNotFound()
    node_id, index, sig = parts[0], int(parts[1]), parts[2]
    if not hmac.compare_digest(sig, signature(access[1], node_id, index)):
        raise web.HTTPNotFound()
    rest = parts[3] if len(parts) > 3 else ""
    if not rest:
        return web.Response(text="computeMetadata/\n", headers=_FLAVOR)  # google-auth's ping
    if request.headers.get("Metadata-Flavor") != "Google":
        return web.Response(status=403, headers=_FLAVOR, text=(
            f"Your client does not have permission to get URL /{rest} from this server. "
            "Missing Metadata-Flavor:Google header.\n"))
    rec = state.fabric.record(node_id)
    prefix = "computeMetadata/v1/"
    values: dict[str, Any] = {} if rec is None or index >= rec.hosts else _values(
        request, rec, index)
    value = values.get(rest[len(prefix):]) if rest.startswith(prefix) else None
    if value is None:
        return web.Response(status=404, headers=_FLAVOR, text="Not Found\n")
    return web.Response(text=value, headers=_FLAVOR)
