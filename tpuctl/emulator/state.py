"""The emulator's resources (nodes, operations, queued resources) behind one facade.

Each concern has its own module: records (resources.py), API errors (errors.py), the state
file (persistence.py), operations (operations.py), node requests (nodespec.py) and life
cycles (nodes.py), faults acted out (chaos.py), queued resources (queued.py), and what they
share (core.py). `EmulatorState` builds them and is all the HTTP layer and the server see.
Everything runs on one asyncio loop; state is saved after every change, so a restarted
emulator keeps its nodes and restarts the workers of READY ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tpuctl.emulator import persistence
from tpuctl.emulator.bastion import Bastion
from tpuctl.emulator.chaos import Chaos
from tpuctl.emulator.core import Core, WorkerHostLike
from tpuctl.emulator.disks import Disks
from tpuctl.emulator.errors import CODE_ABORTED
from tpuctl.emulator.fabric import Fabric
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.nodes import Nodes
from tpuctl.emulator.oslogin import OsLogin
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.projects import Projects
from tpuctl.emulator.queued import QueuedResources
from tpuctl.emulator.reconcile import Reconciler
from tpuctl.emulator.reservations import Reservations
from tpuctl.emulator.resources import NodeRecord, QueuedResourceRecord

__all__ = ["EmulatorState", "WorkerHostLike"]


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
        self._store = Store(state_dir, ssh_port)
        self._core = Core(
            self._store,
            workers,
            faults if faults is not None else Faults(),
            create_delay,
            create_delay / 4 if op_delay is None else op_delay,
        )
        self._ops = self._core.ops
        self._reconciler = Reconciler(self._core)
        self._nodes = Nodes(self._core, self._reconciler)
        self._chaos = Chaos(self._core, self._nodes)
        self._queued = QueuedResources(self._core, self._nodes)
        self._bastion = Bastion(self._core, ssh_port)

    # ---------------------------------------------------------------- what others read

    @property
    def state_dir(self) -> Path:
        return self._store.state_dir

    @property
    def ssh_port(self) -> int:
        return self._store.ssh_port

    @property
    def workers(self) -> WorkerHostLike:
        return self._core.workers

    @property
    def faults(self) -> Faults:
        return self._core.faults

    @property
    def nodes(self) -> dict[str, NodeRecord]:
        return self._store.nodes

    @property
    def queued_resources(self) -> dict[str, QueuedResourceRecord]:
        return self._store.queued_resources

    @property
    def operations(self) -> dict[str, dict[str, Any]]:
        return self._store.operations

    @property
    def oslogin(self) -> OsLogin:
        return self._core.oslogin

    @property
    def projects(self) -> Projects:
        return self._core.projects

    @property
    def fabric(self) -> Fabric:
        """What workers ask while they run (vms.World): the server hands it to the host."""
        return self._core.fabric

    @property
    def reservations(self) -> Reservations:
        return self._core.reservations

    @property
    def disks(self) -> Disks:
        return self._core.disks

    @property
    def bastion(self) -> Bastion:
        return self._bastion

    def refresh_logins(self) -> None:
        """Project metadata or OS Login profiles changed: the guest agents follow."""
        self._nodes.refresh_logins()

    @property
    def current_create_delay(self) -> float:
        """How long a node stays CREATING: the `create-delay` fault, else `--create-delay`."""
        return self._core.current_create_delay

    # ---------------------------------------------------------------- persistence, life

    @property
    def state_file(self) -> Path:
        return self._store.state_file

    @staticmethod
    def saved_ssh_port(state_dir: Path) -> int | None:
        """The SSH port a previous run used, so restarted workers keep their addresses."""
        return persistence.saved_ssh_port(state_dir)

    def load(self) -> None:
        self._store.load()

    def save(self) -> None:
        self._store.save()

    async def resume(self) -> None:
        """Pick up where a previous run stopped: restart workers, finish transitions."""
        await self._nodes.resume()
        owned = {r.pending_op for r in self.nodes.values()}
        owned |= {q.pending_op for q in self.queued_resources.values()}
        for op in self.operations.values():  # e.g. updates, which finish on their own
            if not op.get("done") and op["name"] not in owned:
                target = self.nodes.get(op["metadata"].get("target", ""))
                if target is not None and op["metadata"].get("verb") == "update":
                    self._ops.finish(op["name"], response=self._nodes.node_any(target))
                else:
                    self._ops.finish(
                        op["name"], error=(CODE_ABORTED, "the emulator restarted meanwhile")
                    )
        self._queued.resume()
        await self._bastion.start()
        self.save()

    async def close(self) -> None:
        """Cancel transitions (they resume on the next start), stop every worker."""
        await self._core.tasks.cancel_all()
        self.save()
        await self._bastion.stop()
        await self.workers.close()
        self._store.slots.close()  # the blocks are free for other emulators again

    # ---------------------------------------------------------------- operations

    def get_operation(self, name: str) -> dict[str, Any]:
        return self._ops.get(name)

    def list_operations(self, parent: str) -> list[dict[str, Any]]:
        return self._ops.under(parent)

    def delete_operation(self, name: str) -> None:
        self._ops.delete(name)

    def cancel_operation(self, name: str) -> None:
        self._ops.cancel(name)

    # ---------------------------------------------------------------- nodes

    def get_node_record(self, name: str) -> NodeRecord:
        return self._nodes.get_record(name)

    def get_node(self, name: str) -> dict[str, Any]:
        return self._nodes.get_node(name)

    def list_nodes(self, parent: str) -> list[dict[str, Any]]:
        return self._nodes.list_nodes(parent)

    def authorized_keys(self, name: str, user: str) -> list[str]:
        return self._nodes.authorized_keys(name, user)

    def guest_attributes(
        self, name: str, query_path: str = "", worker_ids: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        return self._nodes.guest_attributes(name, query_path, worker_ids)

    def create_node(self, parent: str, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._nodes.create_node(parent, node_id, body)

    def stop_node(self, name: str) -> dict[str, Any]:
        return self._nodes.stop_node(name)

    def start_node(self, name: str) -> dict[str, Any]:
        return self._nodes.start_node(name)

    def update_node(self, name: str, body: dict[str, Any], update_mask: str) -> dict[str, Any]:
        return self._nodes.update_node(name, body, update_mask)

    def delete_node(self, name: str) -> dict[str, Any]:
        return self._nodes.delete_node(name)

    # ---------------------------------------------------------------- faults

    async def preempt_node(self, name: str) -> dict[str, Any]:
        return await self._chaos.preempt_node(name)

    def schedule_preempt(self, name: str, after: float) -> dict[str, Any]:
        return self._chaos.schedule_preempt(name, after)

    async def apply_faults(self) -> None:
        """The running workers as the current faults and settings want them."""
        await self._reconciler.apply()

    def drop_connections(self, name: str, worker: int | None = None) -> dict[str, Any]:
        return self._chaos.drop_connections(name, worker)

    # ---------------------------------------------------------------- queued resources

    def get_queued_resource(self, name: str) -> dict[str, Any]:
        return self._queued.get_queued_resource(name)

    def list_queued_resources(self, parent: str) -> list[dict[str, Any]]:
        return self._queued.list_queued_resources(parent)

    def create_queued_resource(
        self, parent: str, qr_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._queued.create_queued_resource(parent, qr_id, body)

    def delete_queued_resource(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._queued.delete_queued_resource(name, force)

    def reset_queued_resource(self, name: str) -> dict[str, Any]:
        return self._queued.reset_queued_resource(name)
