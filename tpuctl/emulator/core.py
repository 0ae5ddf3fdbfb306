"""What the emulator's resource kinds share: the store and its operations, the one in-flight
task per resource, the worker host, the faults and the delays."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tpuctl.emulator.disks import Disks
from tpuctl.emulator.fabric import Fabric
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.guestagent import GuestAgents
from tpuctl.emulator.operations import Operations
from tpuctl.emulator.oslogin import OsLogin
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.projects import Projects
from tpuctl.emulator.reservations import Reservations

log = logging.getLogger(__name__)


class EmulatedWorkerLike(Protocol):
    """What `WorkerHost.start_node` returns per worker (see vms.EmulatedWorker)."""

    @property
    def index(self) -> int: ...
    @property
    def ip(self) -> str: ...
    @property
    def ssh_port(self) -> int: ...
    @property
    def host_key(self) -> str: ...


class WorkerHostLike(Protocol):
    """The part of `hosts.WorkerHost` the state drives; tests may pass a fake."""

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


class Tasks:
    """The one in-flight transition per resource, plus fire-and-forget timers; all on the
    emulator's one event loop."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}  # in-flight transition per resource
        self._background: set[asyncio.Task[None]] = set()

    def get(self, key: str) -> asyncio.Task[None] | None:
        return self._tasks.get(key)

    def pop(self, key: str) -> asyncio.Task[None] | None:
        return self._tasks.pop(key, None)

    def spawn(self, key: str, coro: Any) -> None:
        """Run the one in-flight transition of resource `key`."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks[key] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]
            if not t.cancelled() and t.exception() is not None:
                log.error("emulator task for %s failed", key, exc_info=t.exception())

        task.add_done_callback(done)

    def spawn_background(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cancel(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def cancel_all(self) -> None:
        """Cancel every transition and timer and wait until each has ended."""
        tasks = list(self._tasks.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass
class Core:
    """Handed to every resource kind (nodes, queued resources, chaos)."""

    store: Store
    workers: WorkerHostLike
    faults: Faults
    create_delay: float
    op_delay: float
    tasks: Tasks = field(default_factory=Tasks)
    ops: Operations = field(init=False)
    agents: GuestAgents = field(init=False)  # which keys each node's workers accept
    oslogin: OsLogin = field(init=False)
    projects: Projects = field(init=False)
    fabric: Fabric = field(init=False)  # what workers ask while they run
    reservations: Reservations = field(init=False)
    disks: Disks = field(init=False)
    # why a queued resource's node could not be created (it has no operation of its own)
    create_errors: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ops = Operations(self.store)
        self.agents = GuestAgents(self.faults)
        self.oslogin = OsLogin(self.store, self.faults)
        self.projects = Projects(self.store)
        self.fabric = Fabric(self.store, self.faults, self.agents)
        self.reservations = Reservations(self.store)
        self.disks = Disks(self.store)

    @property
    def current_create_delay(self) -> float:
        """How long a node stays CREATING: the `create-delay` fault, else `--create-delay`."""
        return self.faults.create_delay(self.create_delay)

    def save(self) -> None:
        self.store.save()
