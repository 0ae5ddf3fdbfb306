"""The emulator's resources as records: a node or queued resource in the API's own JSON shape
(camelCase, enum *names*) plus what only the emulator knows, and the names that locate them.

The HTTP layer only re-encodes enums and paginates what these hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tpuctl.accelerators import AcceleratorType
from tpuctl.emulator import catalog
from tpuctl.emulator.errors import ApiError, invalid_argument

TYPE_PREFIX = "type.googleapis.com/"
OPERATION_METADATA_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.OperationMetadata"
NODE_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.Node"
QUEUED_RESOURCE_TYPE = TYPE_PREFIX + "google.cloud.tpu.v2.QueuedResource"
EMPTY_TYPE = TYPE_PREFIX + "google.protobuf.Empty"


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
    reservation: str | None = None  # the reservation whose chips it uses (reservations.py)
    # a multislice node's place in its group: sliceId, numSlices, coordinator (metadata.py)
    megascale: dict[str, Any] | None = None

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
            "reservation": self.reservation,
            "megascale": self.megascale,
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
            reservation=d.get("reservation"),
            megascale=d.get("megascale"),
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
class NodePlan:
    """A validated node create request, before anything is stored."""

    project: str
    zone: str
    node_id: str
    accelerator: AcceleratorType
    resource: dict[str, Any]
