"""The emulator's resources in memory and their one JSON file in the state dir.

Saved after every change (temp file + os.replace, 0600: nodes' ssh-keys are in it), so a
restarted emulator keeps its nodes and restarts the workers of READY ones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tpuctl.emulator.addressing import SlotClaims
from tpuctl.emulator.resources import NodeRecord, QueuedResourceRecord

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
MAX_DONE_OPERATIONS = 1000


def saved_ssh_port(state_dir: Path) -> int | None:
    """The SSH port a previous run used, so restarted workers keep their addresses."""
    try:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text())
        port = int(data.get("ssh_port") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return port or None


class Store:
    """Nodes, queued resources and operations by name, and where they are saved."""

    def __init__(self, state_dir: Path, ssh_port: int) -> None:
        self.state_dir = Path(state_dir)
        self.ssh_port = ssh_port
        self.nodes: dict[str, NodeRecord] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.queued_resources: dict[str, QueuedResourceRecord] = {}
        # OS Login profiles: account email -> {fingerprint: {"key", "expirationTimeUsec"?}}
        self.oslogin: dict[str, dict[str, dict[str, str]]] = {}
        self.project_metadata: dict[str, dict[str, str]] = {}  # project -> metadata items
        self.bastion: dict[str, Any] | None = None  # its settings (bastion.py)
        self.reservations: dict[str, dict[str, Any]] = {}  # name -> reservation (admin)
        self.disks: dict[str, dict[str, Any]] = {}  # name -> Compute disk (disks.py)
        self.slots = SlotClaims()  # the address blocks held machine-wide (addressing.py)

    def used_slots(self) -> set[int]:
        """The address blocks this emulator's nodes and bastion own."""
        used = {r.slot for r in self.nodes.values()}
        if self.bastion and self.bastion.get("slot"):
            used.add(int(self.bastion["slot"]))
        return used

    def allocate_slot(self) -> int | None:
        """A new address block, claimed machine-wide at once (None: none left)."""
        return self.slots.allocate(self.used_slots())

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

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
        self.oslogin = dict(data.get("oslogin") or {})
        self.project_metadata = dict(data.get("project_metadata") or {})
        self.bastion = data.get("bastion") or None
        self.reservations = dict(data.get("reservations") or {})
        self.disks = dict(data.get("disks") or {})
        for slot in sorted(self.used_slots()):  # a restart: hold our blocks again
            if not self.slots.claim(slot):
                log.warning("address block 127.%d.0.0/16 of a saved node is claimed by another "
                            "emulator on this machine", slot)

    def save(self) -> None:
        self._prune_operations()
        data = {
            "version": STATE_VERSION,
            "ssh_port": self.ssh_port,
            "nodes": [n.to_json() for n in self.nodes.values()],
            "queued_resources": [q.to_json() for q in self.queued_resources.values()],
            "operations": list(self.operations.values()),
            "oslogin": self.oslogin,
            "project_metadata": self.project_metadata,
            "bastion": self.bastion,
            "reservations": self.reservations,
            "disks": self.disks,
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
