"""What the emulated Cloud TPU offers: zones, runtime versions, accelerator types, enum numbers.

The enum numbers are copied from google-cloud-tpu's proto types (the REST client sends
`enum-encoding=int` and expects them back); a test checks them against the real protos so the
emulator itself need not import the client library (about 370 ms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tpuctl.accelerators import AcceleratorType, all_accelerator_types

# Real zones that host TPUs, plus two local ones for people who never touch GCP.
ZONES: tuple[str, ...] = (
    "us-central1-a",
    "us-central1-b",
    "us-central1-c",
    "us-central1-f",
    "us-central2-b",
    "us-east1-c",
    "us-east1-d",
    "us-east5-a",
    "us-east5-b",
    "us-east5-c",
    "us-south1-a",
    "us-west1-c",
    "us-west4-a",
    "europe-west4-a",
    "europe-west4-b",
    "asia-east1-c",
    "asia-northeast1-b",
    "asia-southeast1-b",
    "local-a",
    "local-b",
)

# Every zone lists the same runtimes: the documented defaults per generation plus common
# extras, so validation against "the zone's runtime list" exercises the same code as on GCP.
RUNTIME_VERSIONS: tuple[str, ...] = (
    "tpu-ubuntu2204-base",
    "tpu-vm-base",
    "tpu-vm-v4-base",
    "tpu-vm-v4-pt-2.0",
    "tpu-vm-tf-2.16.1-pjrt",
    "tpu-vm-tf-2.17.0-pjrt",
    "v2-alpha-tpuv5",
    "v2-alpha-tpuv5-lite",
    "v2-alpha-tpuv6e",
    "v2-tpuv5-litepod",
)

# Port published in networkEndpoints, as on GCP (it is the TPU runtime's port, not SSH).
ENDPOINT_PORT = 8470

# Enum name -> proto number, from google.cloud.tpu_v2.types (checked by tests).
NODE_STATE: Mapping[str, int] = {
    "STATE_UNSPECIFIED": 0,
    "CREATING": 1,
    "READY": 2,
    "RESTARTING": 3,
    "REIMAGING": 4,
    "DELETING": 5,
    "REPAIRING": 6,
    "STOPPED": 8,
    "STOPPING": 9,
    "STARTING": 10,
    "PREEMPTED": 11,
    "TERMINATED": 12,
    "HIDING": 13,
    "HIDDEN": 14,
    "UNHIDING": 15,
    "UNKNOWN": 16,
}
NODE_HEALTH: Mapping[str, int] = {
    "HEALTH_UNSPECIFIED": 0,
    "HEALTHY": 1,
    "TIMEOUT": 3,
    "UNHEALTHY_TENSORFLOW": 4,
    "UNHEALTHY_MAINTENANCE": 5,
}
API_VERSION: Mapping[str, int] = {
    "API_VERSION_UNSPECIFIED": 0,
    "V1_ALPHA1": 1,
    "V1": 2,
    "V2_ALPHA1": 3,
    "V2": 4,
}
ACCELERATOR_CONFIG_TYPE: Mapping[str, int] = {
    "TYPE_UNSPECIFIED": 0,
    "V2": 2,
    "V3": 4,
    "V4": 7,
    "V5LITE_POD": 9,
    "V5P": 10,
    "V6E": 11,
}
QUEUED_RESOURCE_STATE: Mapping[str, int] = {
    "STATE_UNSPECIFIED": 0,
    "CREATING": 1,
    "ACCEPTED": 2,
    "PROVISIONING": 3,
    "FAILED": 4,
    "DELETING": 5,
    "ACTIVE": 6,
    "SUSPENDING": 7,
    "SUSPENDED": 8,
    "WAITING_FOR_RESOURCES": 9,
}
QUEUED_RESOURCE_STATE_INITIATOR: Mapping[str, int] = {
    "STATE_INITIATOR_UNSPECIFIED": 0,
    "USER": 1,
    "SERVICE": 2,
}
DISK_MODE: Mapping[str, int] = {"DISK_MODE_UNSPECIFIED": 0, "READ_WRITE": 1, "READ_ONLY": 2}


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def is_known_zone(zone: str) -> bool:
    return zone in ZONES


def runtime_versions(zone: str) -> tuple[str, ...]:
    return RUNTIME_VERSIONS if is_known_zone(zone) else ()


def accelerator_types(zone: str) -> list[AcceleratorType]:
    return all_accelerator_types() if is_known_zone(zone) else []


def find_accelerator(zone: str, name: str) -> AcceleratorType | None:
    for acc in accelerator_types(zone):
        if acc.name == name:
            return acc
    return None


def accelerator_from_config(zone: str, api_type: str, topology: str) -> AcceleratorType | None:
    """Map an `acceleratorConfig` (type + topology) to the accelerator type it denotes."""
    try:
        chips = 1
        for dim in topology.lower().split("x"):
            chips *= int(dim)
    except ValueError:
        return None
    for acc in accelerator_types(zone):
        if acc.generation.api_type == api_type and acc.chips == chips:
            return acc
    return None


def decode_enum(table: Mapping[str, int], value: Any) -> str | None:
    """Accept an enum as a name or a proto number (both are valid JSON forms); None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        for name, number in table.items():
            if number == value:
                return name
        return None
    if isinstance(value, str) and value in table:
        return value
    return None


# Which fields of which message are enums, and which fields hold nested messages. Just
# enough of the schema to re-encode the emulator's own responses (which use enum names).
_ENUM_FIELDS: dict[str, dict[str, Mapping[str, int]]] = {
    "Node": {"state": NODE_STATE, "health": NODE_HEALTH, "apiVersion": API_VERSION},
    "AcceleratorConfig": {"type": ACCELERATOR_CONFIG_TYPE},
    "AttachedDisk": {"mode": DISK_MODE},
    "QueuedResourceState": {
        "state": QUEUED_RESOURCE_STATE,
        "stateInitiator": QUEUED_RESOURCE_STATE_INITIATOR,
    },
}
_MESSAGE_FIELDS: dict[str, dict[str, str]] = {
    "Node": {"acceleratorConfig": "AcceleratorConfig", "dataDisks": "AttachedDisk"},
    "AcceleratorType": {"acceleratorConfigs": "AcceleratorConfig"},
    "QueuedResource": {"state": "QueuedResourceState", "tpu": "Tpu"},
    "Tpu": {"nodeSpec": "NodeSpec"},
    "NodeSpec": {"node": "Node"},
    "ListNodesResponse": {"nodes": "Node"},
    "ListAcceleratorTypesResponse": {"acceleratorTypes": "AcceleratorType"},
    "ListQueuedResourcesResponse": {"queuedResources": "QueuedResource"},
    "ListOperationsResponse": {"operations": "Operation"},
}
_ANY_TYPES = {
    "type.googleapis.com/google.cloud.tpu.v2.Node": "Node",
    "type.googleapis.com/google.cloud.tpu.v2.QueuedResource": "QueuedResource",
}


def encode_enums(message: str, obj: Any, as_int: bool) -> Any:
    """Return a copy of `obj` (a `message` in JSON form) with enums as numbers or names."""
    if isinstance(obj, list):
        return [encode_enums(message, item, as_int) for item in obj]
    if not isinstance(obj, dict):
        return obj
    enums = _ENUM_FIELDS.get(message, {})
    nested = _MESSAGE_FIELDS.get(message, {})
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in enums:
            name = decode_enum(enums[key], value)
            out[key] = value if name is None else (enums[key][name] if as_int else name)
        elif key in nested:
            out[key] = encode_enums(nested[key], value, as_int)
        elif message == "Operation" and key == "response" and isinstance(value, dict):
            inner = _ANY_TYPES.get(str(value.get("@type", "")))
            out[key] = encode_enums(inner, value, as_int) if inner else value
        else:
            out[key] = value
    return out
