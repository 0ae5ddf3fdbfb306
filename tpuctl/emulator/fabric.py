"""The emulated network and logins as the workers see them while they run (vms.World): the
network mode, which source addresses are inside a node's VPC, whether a node's guest agent
applies OS Login, and the faults that act inside a worker's sessions.

A node's VPC is its (first) NetworkConfig's network. Inside it: every internal address of
every worker of every node on that network, the bastion's internal address when the bastion
is on it (or on every network), and the IAP stand-in's source address (as the firewall rule
IAP needs lets Google's IAP range in). Nothing else reaches an internal address.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpuctl.emulator import addressing, netconfig
from tpuctl.emulator.faults import PACKAGE_SKEW, STUCK_WORKERS, Faults
from tpuctl.emulator.guestagent import GuestAgents
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.resources import NodeRecord

_UP = ("READY", "CREATING", "STARTING", "STOPPING", "REPAIRING")


@dataclass(frozen=True)
class Peer:
    """A machine of the emulated VPC that is no node's worker (the bastion)."""

    internal_ip: str
    network: str | None  # None: every network (a bastion peered with all of them)


class Fabric:
    """Answers the workers' questions from the emulator's state (implements vms.World)."""

    def __init__(self, store: Store, faults: Faults, agents: GuestAgents) -> None:
        self._store = store
        self._faults = faults
        self._agents = agents
        self.bastion: Peer | None = None
        # (127.0.0.1:API_PORT, this run's token): the metadata servers' base and HMAC key
        self.metadata: tuple[str, str] | None = None

    def record(self, node_id: str) -> NodeRecord | None:
        """The node whose worker-host id (project.zone.node) this is."""
        for rec in self._store.nodes.values():
            if rec.key == node_id:
                return rec
        return None

    def _by_slot(self, slot: int) -> NodeRecord | None:
        for rec in self._store.nodes.values():
            if rec.slot == slot:
                return rec
        return None

    def cloud_network(self) -> bool:
        return self._faults.cloud_network

    def external_ips(self, node_id: str) -> bool:
        rec = self.record(node_id)
        return bool(rec and netconfig.primary(rec.resource).get("enableExternalIps"))

    def network_of(self, rec: NodeRecord) -> str:
        return str(netconfig.primary(rec.resource).get("network", ""))

    def inside(self, source_ip: str, network: str) -> bool:
        """Is `source_ip` a machine of `network`?"""
        if source_ip == addressing.IAP_SOURCE:
            return True
        b = self.bastion
        if b is not None and source_ip == b.internal_ip:
            return b.network is None or b.network == network
        where = addressing.split(source_ip)
        if where is None or where[2]:  # not emulated, or an external address
            return False
        slot, index, _ = where
        other = self._by_slot(slot)
        return (other is not None and index < other.hosts and other.state in _UP
                and self.network_of(other) == network)

    def may_reach(self, node_id: str, source_ip: str) -> bool:
        rec = self.record(node_id)
        return rec is not None and self.inside(source_ip, self.network_of(rec))

    def internal_of(self, ip: str) -> str | None:
        """The network of an emulated internal address with a running worker, else None."""
        where = addressing.split(ip)
        if where is None or where[2]:
            return None
        rec = self._by_slot(where[0])
        if rec is None or where[1] >= rec.hosts or rec.state not in _UP:
            return None
        return self.network_of(rec)

    def oslogin_user(self, node_id: str, username: str) -> bool:
        """Is this login an OS Login account's (the node's guest agent applies OS Login)?"""
        rec = self.record(node_id)
        return rec is not None and self._agents.oslogin(rec.name)

    def metadata_host(self, node_id: str, index: int) -> str | None:
        """GCE_METADATA_HOST of a worker (metadata.py), once the API listens."""
        from tpuctl.emulator.metadata import address

        return None if self.metadata is None else address(*self.metadata, node_id, index)

    def stuck(self, node_id: str, index: int) -> bool:
        rec = self.record(node_id)
        return rec is not None and index in self._faults.workers(STUCK_WORKERS, rec.name,
                                                                 rec.hosts)

    def skew(self, node_id: str, index: int) -> list[str]:
        """Packages whose recorded version differs on this worker (package-skew)."""
        rec = self.record(node_id)
        return [] if rec is None else self._faults.named(PACKAGE_SKEW, rec.name, index)
