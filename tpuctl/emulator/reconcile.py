"""Faults and settings that hold while they are set, kept in step with the running workers:
at every change of the faults, of a node (external IPs updated) and whenever a node's workers
(re)start. Unreachable workers (listeners closed), external listeners (network mode, external
IPs), and what `doctor` checks on a worker (workerfaults.py)."""

from __future__ import annotations

import asyncio
import logging

from tpuctl.emulator.core import Core
from tpuctl.emulator.faults import (
    BLOCKED_PORTS,
    FULL_DISK,
    HELD_TPU,
    NO_ENSUREPIP,
    STALE_LOCKFILE,
)
from tpuctl.emulator.resources import NodeRecord
from tpuctl.emulator.workerfaults import Wanted

log = logging.getLogger(__name__)

_RUNNING = ("READY", "CREATING", "STARTING")


class Reconciler:
    """Makes the running workers show what the faults say, and nothing else."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._unreachable: dict[str, set[int]] = {}  # node key -> workers made unreachable
        self._lock = asyncio.Lock()

    async def restarted(self, key: str) -> None:
        """A node's workers listen afresh (all reachable): apply the faults to them again."""
        self._unreachable.pop(key, None)
        await self.apply()

    def wanted(self, rec: NodeRecord, index: int) -> Wanted:
        faults, name, hosts = self._core.faults, rec.name, rec.hosts
        return Wanted(
            full_disk=index in faults.workers(FULL_DISK, name, hosts),
            held_tpu=index in faults.workers(HELD_TPU, name, hosts),
            stale_lockfile=index in faults.workers(STALE_LOCKFILE, name, hosts),
            blocked_ports=frozenset(int(p) for p in faults.named(BLOCKED_PORTS, name, index)),
            no_ensurepip=faults.node_named(NO_ENSUREPIP, name),
        )

    async def apply(self) -> None:
        """Every running node's workers as the faults want them now."""
        async with self._lock:
            for rec in list(self._core.store.nodes.values()):
                if not rec.workers or rec.state not in _RUNNING:
                    continue
                await self._reachability(rec)
                host = self._core.workers
                sync = getattr(host, "sync_network", None)
                act = getattr(host, "apply_worker_faults", None)
                try:
                    if sync is not None:
                        await sync(rec.key)
                    if act is not None:
                        for index in range(len(rec.workers)):
                            await act(rec.key, index, self.wanted(rec, index))
                except (KeyError, IndexError):  # its workers are not running (any more)
                    continue
                except OSError as e:
                    log.warning("faults on %s: %s", rec.name, e)

    async def _reachability(self, rec: NodeRecord) -> None:
        """`unreachable-workers`: listeners closed (connections dropped), or reopened."""
        set_reachable = getattr(self._core.workers, "set_reachable", None)
        if set_reachable is None:  # a fake worker host
            return
        want = self._core.faults.unreachable(rec.name, len(rec.workers))
        have = self._unreachable.get(rec.key, set())
        for index in sorted(want ^ have):
            try:
                await set_reachable(rec.key, index, index not in want)
            except (KeyError, IndexError):  # its workers are not running (any more)
                continue
            except OSError as e:
                log.warning("worker %d of %s: cannot reopen: %s", index, rec.name, e)
                continue
            if index in want:
                have.add(index)
            else:
                have.discard(index)
        if have:
            self._unreachable[rec.key] = have
        else:
            self._unreachable.pop(rec.key, None)
