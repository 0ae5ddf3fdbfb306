"""A node create or update request checked as GCP checks it, before anything is stored:
ids, known fields, accelerator, runtime version, string maps, update masks."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Container
from typing import Any

from tpuctl.accelerators import AcceleratorType
from tpuctl.emulator import capacity, catalog, disks, netconfig
from tpuctl.emulator.errors import already_exists, invalid_argument
from tpuctl.emulator.resources import NodePlan, check_location, now_rfc3339, parse_location

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


def plan_node(
    parent: str, node_id: str, body: dict[str, Any], existing: Container[str]
) -> NodePlan:
    """Validate a create request like GCP does, without storing anything; `existing` holds
    the names of the nodes there are."""
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
    if name in existing:
        raise already_exists(name)

    acc = accelerator_of(zone, body)
    runtime = body.get("runtimeVersion")
    if not runtime:
        raise invalid_argument("runtimeVersion is required")
    if runtime not in catalog.runtime_versions(zone):
        raise invalid_argument(f"Runtime version {runtime!r} is not supported in zone {zone}")
    labels = label_map(body.get("labels", {}))
    metadata = metadata_map(body.get("metadata", {}))
    sched = capacity.scheduling_config(body.get("schedulingConfig"))
    data_disks = disks.data_disks(body.get("dataDisks"), zone, acc.hosts)
    network = netconfig.network_fields(body, project, zone)
    tags = netconfig.tags(body["tags"]) if body.get("tags") is not None else []
    resource: dict[str, Any] = {
        "name": name,
        "id": str(random.randrange(10**18, 9 * 10**18)),
        "acceleratorType": acc.name,
        "acceleratorConfig": {"type": acc.generation.api_type, "topology": acc.topology},
        "runtimeVersion": runtime,
        "state": "CREATING",
        "createTime": now_rfc3339(),
        **network,
        "cidrBlock": str(body.get("cidrBlock") or "10.128.0.0/20"),
        "serviceAccount": service_account(body.get("serviceAccount"), project),
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
    if tags:
        resource["tags"] = tags
    if data_disks:
        resource["dataDisks"] = data_disks
    if body.get("shieldedInstanceConfig"):
        resource["shieldedInstanceConfig"] = copy.deepcopy(body["shieldedInstanceConfig"])
    return NodePlan(project, zone, node_id, acc, resource)


def accelerator_of(zone: str, body: dict[str, Any]) -> AcceleratorType:
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


def update_paths(body: dict[str, Any], update_mask: str) -> list[str]:
    """The camelCase paths of an UpdateNode mask, each one GCP lets you update."""
    if not isinstance(body, dict):
        raise invalid_argument("the node must be a JSON object")
    paths = [_camel(p.strip()) for p in update_mask.split(",") if p.strip()]
    if not paths:
        raise invalid_argument("updateMask is required")
    bad = [p for p in paths if p not in UPDATABLE_PATHS]
    if bad:
        raise invalid_argument(f"field {bad[0]!r} cannot be updated")
    return paths


def updated(resource: dict[str, Any], body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of `resource` with only the masked fields taken from `body`."""
    new = copy.deepcopy(resource)
    project, zone = parse_location(resource["name"].rsplit("/nodes/", 1)[0])
    for path in paths:
        if path == "networkConfig.enableExternalIps":
            value = (body.get("networkConfig") or {}).get("enableExternalIps", False)
            if not isinstance(value, bool):
                raise invalid_argument(
                    "Invalid value at 'node.network_config.enable_external_ips' (TYPE_BOOL), "
                    f"{value!r}"
                )
            new.setdefault("networkConfig", {})["enableExternalIps"] = value
            continue
        if path == "networkConfig":
            new["networkConfig"] = netconfig.updated_network(
                netconfig.primary(resource), body.get("networkConfig") or {}, project, zone,
                "node.network_config",
            )
            continue
        if path == "tags":
            value_list = netconfig.tags(body.get("tags") or [])
            if value_list:
                new["tags"] = value_list
            else:
                new.pop("tags", None)
            continue
        if path == "schedulingConfig":
            new["schedulingConfig"] = capacity.scheduling_config(body.get(path))
            continue
        if path == "dataDisks":
            value_disks = disks.data_disks(body.get(path), zone, _hosts(resource))
            if value_disks:
                new["dataDisks"] = value_disks
            else:
                new.pop("dataDisks", None)
            continue
        if path in ("labels", "metadata"):
            value_map = label_map(body.get(path, {})) if path == "labels" else metadata_map(
                body.get(path, {}))
            if value_map:
                new[path] = value_map
            else:
                new.pop(path, None)
            continue
        if path in body and body[path] not in (None, "", [], {}):
            new[path] = copy.deepcopy(body[path])
        else:
            new.pop(path, None)
    return new


def _camel(path: str) -> str:
    parts = path.split(".")
    out = []
    for part in parts:
        head, *rest = part.split("_")
        out.append(head + "".join(r[:1].upper() + r[1:] for r in rest))
    return ".".join(out)


def _hosts(resource: dict[str, Any]) -> int:
    parent = resource["name"].rsplit("/nodes/", 1)[0]
    acc = catalog.find_accelerator(parse_location(parent)[1], str(resource["acceleratorType"]))
    return acc.hosts if acc is not None else 1


# Compute's rules for labels and metadata keys (TPU VMs are Compute instances).
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
_METADATA_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_LABELS = 64
MAX_METADATA_BYTES = 512 * 1024
MAX_STARTUP_SCRIPT_BYTES = 256 * 1024
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def label_map(value: Any) -> dict[str, str]:
    labels = string_map(value, "labels")
    if len(labels) > MAX_LABELS:
        raise invalid_argument(f"Invalid value for field 'node.labels': at most {MAX_LABELS} "
                               "labels")
    for k, v in labels.items():
        if not _LABEL_KEY_RE.match(k) or not _LABEL_VALUE_RE.match(v):
            raise invalid_argument(
                f"Invalid value for field 'node.labels': {k}={v!r}. Keys are 1-63 lowercase "
                "letters, digits, '_' or '-' starting with a letter; values 0-63 of them")
    return labels


def metadata_map(value: Any) -> dict[str, str]:
    metadata = string_map(value, "metadata")
    for k in metadata:
        if not _METADATA_KEY_RE.match(k):
            raise invalid_argument(
                f"Invalid value for field 'node.metadata': key {k!r}. Must be a match of "
                "regex '[a-zA-Z0-9-_]{1,128}'")
    if sum(len(k) + len(v.encode()) for k, v in metadata.items()) > MAX_METADATA_BYTES:
        raise invalid_argument("Invalid value for field 'node.metadata': the metadata of a "
                               "node must be less than 512 KB")
    if len(metadata.get("startup-script", "").encode()) > MAX_STARTUP_SCRIPT_BYTES:
        raise invalid_argument("Invalid value for field 'node.metadata': startup-script must "
                               "be at most 256 KB (use startup-script-url)")
    return metadata


def service_account(value: Any, project: str) -> dict[str, Any]:
    """The node's service account as GCP stores it: the project's default Compute service
    account and the cloud-platform scope where the request left them empty."""
    from tpuctl.emulator.projects import default_service_account

    config = value if value is not None else {}
    if not isinstance(config, dict):
        raise capacity.bad_value("node.service_account",
                                 "type.googleapis.com/google.cloud.tpu.v2.ServiceAccount", value)
    for key in config:
        if key not in ("email", "scope"):
            raise capacity.unknown_field(key, "node.service_account")
    email = config.get("email") or ""
    if not isinstance(email, str) or (email and (
            email != "default" and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email))):
        raise invalid_argument(
            f"Invalid value for field 'node.service_account.email': {email!r}")
    scopes = config.get("scope") or list(DEFAULT_SCOPES)
    if not isinstance(scopes, list) or not all(isinstance(x, str) and x for x in scopes):
        raise capacity.bad_value("node.service_account.scope", "TYPE_STRING", scopes)
    if not email or email == "default":
        email = default_service_account(project)
    return {"email": email, "scope": list(scopes)}


def string_map(value: Any, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid_argument(f"{field_name} must map strings to strings")
    return dict(value)
