"""Faults acted out on nodes by admin calls: preemption (now or on a timer), SSH connections
cut. Faults that follow their setting (unreachable workers, full disks...) are kept in step
by reconcile.py; the decisions themselves (rates, seeds, zones) live in faults.py."""

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
from tpuctl.emulator.nodes import Nodes

log = logging.getLogger(__name__)


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
        return self._nodes.get_node(name)

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
