"""A node's `networkConfig`/`networkConfigs` and `tags`, checked and stored as GCP does:
Compute resource names in any of their forms (short, partial, full URL), stored as partial
names (`projects/P/global/networks/N`, `projects/P/regions/R/subnetworks/S`); a subnetwork in
the zone's region; strict JSON types; `enableExternalIps` false unless asked for (the API's
default: gcloud asks for it unless `--internal-ips`)."""

from __future__ import annotations

import re
from typing import Any

from tpuctl.emulator import catalog
from tpuctl.emulator.errors import ApiError, invalid_argument

# Compute Engine resource names (networks, subnetworks, network tags).
NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{NAME}$")
_URL = r"(?:https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta|alpha)/)?"
_NETWORK_RE = re.compile(rf"^{_URL}(?:projects/(?P<project>[^/]+)/)?global/networks/(?P<n>[^/]+)$")
_SUBNET_RE = re.compile(
    rf"^{_URL}(?:projects/(?P<project>[^/]+)/)?regions/(?P<region>[^/]+)/subnetworks/(?P<n>[^/]+)$"
)
FIELDS = {"network": "network", "subnetwork": "subnetwork",
          "enableExternalIps": "enable_external_ips", "canIpForward": "can_ip_forward",
          "queueCount": "queue_count"}
MAX_TAGS = 64


def _bad_value(path: str, kind: str, value: Any) -> ApiError:
    """The API front end's own text for a JSON value of the wrong type."""
    import json

    return invalid_argument(f"Invalid value at '{path}' ({kind}), {json.dumps(value)}")


def network_name(value: Any, project: str, path: str) -> str:
    if not isinstance(value, str):
        raise _bad_value(path, "TYPE_STRING", value)
    m = _NETWORK_RE.match(value)
    name, owner = (m.group("n"), m.group("project") or project) if m else (value, project)
    if not _NAME_RE.match(name):
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. Must be a network name "
            f"matching '{NAME}' or projects/PROJECT/global/networks/NAME"
        )
    return f"projects/{owner}/global/networks/{name}"


def subnetwork_name(value: Any, project: str, region: str, path: str) -> str:
    if not isinstance(value, str):
        raise _bad_value(path, "TYPE_STRING", value)
    m = _SUBNET_RE.match(value)
    name, owner, where = (
        (m.group("n"), m.group("project") or project, m.group("region")) if m
        else (value, project, region)
    )
    if not _NAME_RE.match(name):
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. Must be a subnetwork name matching "
            f"'{NAME}' or projects/PROJECT/regions/REGION/subnetworks/NAME"
        )
    if where != region:
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. The subnetwork must be in the "
            f"node's region {region}, not {where}"
        )
    return f"projects/{owner}/regions/{where}/subnetworks/{name}"


def network_config(value: Any, project: str, zone: str, path: str) -> dict[str, Any]:
    """One NetworkConfig, defaults filled in, names in their partial form."""
    if not isinstance(value, dict):
        raise _bad_value(path, "type.googleapis.com/google.cloud.tpu.v2.NetworkConfig", value)
    for key in value:
        if key not in FIELDS:
            raise invalid_argument(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': "
                "Cannot find field."
            )
    region = catalog.region_of(zone)
    out: dict[str, Any] = {
        "network": network_name(value.get("network", "default"), project,
                                f"{path}.network"),
        "subnetwork": subnetwork_name(value.get("subnetwork", "default"), project, region,
                                      f"{path}.subnetwork"),
    }
    for key in ("enableExternalIps", "canIpForward"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise _bad_value(f"{path}.{FIELDS[key]}", "TYPE_BOOL", flag)
        out[key] = flag
    if "queueCount" in value:
        count = value["queueCount"]
        if isinstance(count, str) and count.isdigit():
            count = int(count)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**31:
            raise _bad_value(f"{path}.queue_count", "TYPE_INT32", value["queueCount"])
        if count:
            out["queueCount"] = count
    return out


def network_fields(body: dict[str, Any], project: str, zone: str) -> dict[str, Any]:
    """The stored `networkConfig` (or `networkConfigs`) of a create request."""
    if body.get("networkConfig") and body.get("networkConfigs"):
        raise invalid_argument(
            "network_config and network_configs are mutually exclusive: specify only one"
        )
    configs = body.get("networkConfigs")
    if configs:
        if not isinstance(configs, list):
            raise _bad_value("node.network_configs", "TYPE_MESSAGE", configs)
        return {"networkConfigs": [
            network_config(c, project, zone, f"node.network_configs[{i}]")
            for i, c in enumerate(configs)
        ]}
    return {"networkConfig": network_config(body.get("networkConfig") or {}, project, zone,
                                            "node.network_config")}


def primary(resource: dict[str, Any]) -> dict[str, Any]:
    """The node's first NetworkConfig: its workers' network and external IPs."""
    configs = resource.get("networkConfigs") or [resource.get("networkConfig") or {}]
    return dict(configs[0])


def updated_network(current: dict[str, Any], value: Any, project: str, zone: str,
                    path: str) -> dict[str, Any]:
    """An UpdateNode of `networkConfig`: flags may change, the network and subnetwork may
    not (they are the VM's)."""
    new = network_config(value, project, zone, path)
    for key in ("network", "subnetwork"):
        asked = (value or {}).get(key)
        if asked is not None and new[key] != current.get(key):
            raise invalid_argument(f"{path}.{key} cannot be updated on an existing node")
        new[key] = current.get(key, new[key])
    return new


def tags(value: Any) -> list[str]:
    """Network tags as GCE checks them: a list of lowercase names, at most 64."""
    if not isinstance(value, list):
        raise _bad_value("node.tags", "TYPE_STRING", value)
    if len(value) > MAX_TAGS:
        raise invalid_argument(f"Invalid value for field 'node.tags': at most {MAX_TAGS} tags")
    for i, tag in enumerate(value):
        if not isinstance(tag, str) or not _NAME_RE.match(tag):
            raise invalid_argument(
                f"Invalid value for field 'node.tags[{i}]': {tag!r}. Must be a match of "
                f"regex '(?:{NAME})'"
            )
    return list(value)
