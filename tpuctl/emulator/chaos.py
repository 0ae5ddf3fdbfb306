"""Faults acted out on nodes: preemption (now or on a timer), workers made unreachable, SSH
connections cut. The decisions themselves (rates, seeds, zones) live in faults.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import (
    CODE_ABORTED,
    ApiError,
    failed_precondition,
    invalid_argument,
)
from tpuctl.emulator.nodes import Nodes, render_node

log = logging.getLogger(__name__)


class Reachability:
    """Which workers the `unreachable-workers` fault has made unreachable, kept in step with
    the fault's current value."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._unreachable: dict[str, set[int]] = {}  # node key -> workers made unreachable
        self._lock = asyncio.Lock()

    async def restarted(self, key: str) -> None:
        """A node's workers listen afresh (all reachable): apply the fault to them again."""
        self._unreachable.pop(key, None)
        await self.apply()

    async def apply(self) -> None:
        """Make the workers named by the `unreachable-workers` fault unreachable (listener
        closed, connections dropped) and every other worker reachable again."""
        set_reachable = getattr(self._core.workers, "set_reachable", None)
        if set_reachable is None:  # a fake worker host
            return
        async with self._lock:
            for rec in list(self._core.store.nodes.values()):
                if not rec.workers or rec.state not in ("READY", "CREATING", "STARTING"):
                    continue
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


class Chaos:
    """The admin calls that break nodes on purpose, as GCP and networks break them."""

    def __init__(self, core: Core, nodes: Nodes) -> None:
        self._core = core
        self._nodes = nodes

    async def preempt_node(self, name: str) -> dict[str, Any]:
        """Fault injection: the node goes PREEMPTED and its workers die, as a spot VM would."""
        rec = self._nodes.get_record(name)
        if rec.state not in ("READY", "STARTING", "CREATING"):
            raise failed_precondition(f"Node {name} is {rec.state}; it cannot be preempted")
        await self._core.tasks.cancel(name)
        if rec.pending_op:
            self._core.ops.finish(rec.pending_op, error=(CODE_ABORTED, "node preempted"))
            rec.pending_op = None
        await self._core.workers.stop_node(rec.key)
        rec.resource["state"] = "PREEMPTED"
        rec.resource.pop("health", None)
        qr = self._core.store.queued_resources.get(rec.resource.get("queuedResource") or "")
        if qr is not None and qr.state in ("ACTIVE", "PROVISIONING"):
            qr.set_state("SUSPENDED", stateInitiator="SERVICE")
        self._core.save()
        return render_node(rec)

    def schedule_preempt(self, name: str, after: float) -> dict[str, Any]:
        """Fault injection: preempt the node `after` seconds from now (a server-side timer);
        a node that is no longer preemptible by then is left alone."""
        self._nodes.get_record(name)  # 404 now, not silently later

        async def later() -> None:
            await asyncio.sleep(after)
            try:
                await self.preempt_node(name)
            except ApiError as e:
                log.warning("scheduled preemption of %s skipped: %s", name, e.message)

        self._core.tasks.spawn_background(later())
        return {"name": name, "preemptAfterSeconds": after}

    def drop_connections(self, name: str, worker: int | None = None) -> dict[str, Any]:
        """Fault injection: cut the SSH connections of one worker (or all) mid-stream, as a
        flaky network would; the workers and their processes live on."""
        rec = self._nodes.get_record(name)
        drop = getattr(self._core.workers, "drop_connections", None)
        if drop is None:
            raise failed_precondition("this worker host cannot drop connections")
        indices = range(len(rec.workers)) if worker is None else [worker]
        for i in indices:
            if not 0 <= i < len(rec.workers):
                raise invalid_argument(f"worker {i} does not exist")
            drop(rec.key, i)
        return {"dropped": list(indices)}
