"""The worker host: all emulated workers of all nodes, in this process, sharing one SSH port;
nodes started (host keys kept across restarts), faults applied to listeners, nodes stopped
with every process they started."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tpuctl.emulator import addressing, image, startup, tpumetrics, workerfaults
from tpuctl.emulator.processes import kill_node_processes, node_marker
from tpuctl.emulator.pythons import offer_interpreters
from tpuctl.emulator.sshserver import HOST_KEY_FILE, load_or_create_host_key, public_line
from tpuctl.emulator.vms import (
    PYTHONS_DIR,
    AuthorizedKeys,
    EmulatedWorker,
    SshFaults,
    VmNode,
    VmWorker,
    World,
    image_path,
)

log = logging.getLogger(__name__)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a startup script runner failed", exc_info=task.exception())


class WorkerHost:
    """All emulated workers of all nodes, in this process, sharing one SSH port."""

    def __init__(self, state_dir: Path, ssh_port: int, *, kill_grace: float = 2.0) -> None:
        self._state_dir = Path(state_dir)
        self._port = ssh_port
        self._kill_grace = kill_grace
        self._nodes: dict[str, VmNode] = {}
        self._uv_cache = self._state_dir / "uv-cache"
        self.faults: SshFaults | None = None  # set by the emulator: refused and cut connections
        self.world: World | None = None  # set by the emulator: network mode, VPCs, logins

    @property
    def ssh_port(self) -> int:
        return self._port

    def _node_dir(self, node_id: str) -> Path:
        if not node_id or node_id in (".", "..") or "/" in node_id or "\0" in node_id:
            raise ValueError(f"node id must be a single path component, got {node_id!r}")
        return self._state_dir / "nodes" / node_id

    async def start_node(
        self,
        node_id: str,
        slot: int,
        num_workers: int,
        chips_per_host: int,
        authorized_keys: AuthorizedKeys,
    ) -> list[EmulatedWorker]:
        """Bring up a node's workers (idempotent while running); host keys survive restarts."""
        running = self._nodes.get(node_id)
        if running is not None and not running.stopping:
            return [w.public() for w in running.workers]
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        node_dir = self._node_dir(node_id)
        node = VmNode(
            node_id, slot, chips_per_host, authorized_keys, self._kill_grace,
            lambda: self.faults, lambda: self.world, marker=node_marker(node_id, self._state_dir),
        )
        self._uv_cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(offer_interpreters, self._state_dir / PYTHONS_DIR, image_path())

        def prepare() -> None:  # file I/O off the event loop
            for i in range(num_workers):
                wdir = node_dir / f"w{i}"
                home = wdir / "home"
                home.mkdir(parents=True, exist_ok=True)
                for d in (node_dir, wdir, home):  # like a VM's home: its user's only
                    d.chmod(0o700)
                key = load_or_create_host_key(wdir / HOST_KEY_FILE)
                node.workers.append(
                    VmWorker(
                        node, i, addressing.internal_ip(slot, i), self._port, home, key,
                        public_line(key), self._uv_cache, addressing.external_ip(slot, i),
                    )
                )

        await asyncio.to_thread(prepare)
        self._nodes[node_id] = node
        results = await asyncio.gather(
            *(w.open_listener() for w in node.workers), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for w in node.workers:
                w.close_listener()
            del self._nodes[node_id]
            raise errors[0]
        await tpumetrics.start_node(node)
        return [w.public() for w in node.workers]

    def node_workers(self, node_id: str) -> list[EmulatedWorker]:
        return [w.public() for w in self._nodes[node_id].workers]

    def connections_accepted(self, node_id: str, index: int) -> int:
        """How many TCP connections worker `index` has accepted (tests count reuse with it)."""
        return self._nodes[node_id].workers[index].accepted

    async def set_reachable(
        self, node_id: str, index: int, reachable: bool, *, drop_connections: bool = True
    ) -> None:
        """Fault injection: close (and drop) or reopen one worker's SSH listener."""
        worker = self._nodes[node_id].workers[index]
        worker.reachable = reachable
        if not reachable:
            worker.close_listener()
            if drop_connections:
                worker.drop_connections()
        elif worker.listener is None:
            await worker.open_listener()

    async def sync_network(self, node_id: str) -> None:
        """External listeners follow the network mode and the node's external IPs."""
        node = self._nodes.get(node_id)
        if node is not None and not node.stopping:
            for w in node.workers:
                await w.sync_external()

    def worker(self, node_id: str, index: int) -> VmWorker:
        return self._nodes[node_id].workers[index]

    async def apply_worker_faults(self, node_id: str, index: int,
                                  want: workerfaults.Wanted) -> None:
        """Fault injection: the faults `doctor` checks, as worker `index` should show them."""
        node = self._nodes.get(node_id)
        if node is not None and not node.stopping and index < len(node.workers):
            await workerfaults.apply(node.workers[index], want)

    def attach_disks(self, node_id: str, disks: Sequence[tuple[Path, bool]]) -> None:
        """The node's data disks, on every worker where a TPU VM has them (image.py)."""
        for w in self._nodes[node_id].workers:
            w.ensure_image()
            image.attach_disks(w.root, disks)

    def run_startup_scripts(self, node_id: str, found: Mapping[str, str],
                            hostnames: Sequence[str]) -> None:
        """Boot: every worker runs the node's startup scripts (startup.py), in the
        background; they end with the node."""
        node = self._nodes.get(node_id)
        if node is None or node.stopping:
            return
        loop = asyncio.get_running_loop()
        for w in node.workers:
            task = loop.create_task(startup.run(w, dict(found), hostnames[w.index]))
            task.add_done_callback(_log_failure)
            node.startup.append(task)

    def drop_connections(self, node_id: str, index: int) -> None:
        """Fault injection: abort a worker's live SSH connections (its commands get killed)."""
        self._nodes[node_id].workers[index].drop_connections()

    async def stop_node(self, node_id: str) -> None:
        """Close the node's listeners and connections and kill every process it started."""
        node = self._nodes.get(node_id)
        if node is not None:
            node.stopping = True
            for task in node.startup:  # the VM goes down: its log just ends
                task.cancel()
            await tpumetrics.stop_node(node)
            for w in node.workers:
                w.close_listener()
                w.drop_connections()
                await workerfaults.undo(w)
        await kill_node_processes(node_marker(node_id, self._state_dir),
                                  node.pgids if node is not None else None, self._kill_grace)
        if node is not None:
            for w in node.workers:
                if w.listener or w.ext_listener:  # reopened by a racing set_reachable
                    w.close_listener()
            self._nodes.pop(node_id, None)

    def remove_node(self, node_id: str) -> None:
        """Delete a (stopped) node's directories, host keys included."""
        if node_id in self._nodes:
            raise RuntimeError(f"node {node_id} is running; stop_node first")
        shutil.rmtree(self._node_dir(node_id), ignore_errors=True)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop_node(n) for n in list(self._nodes)))
