"""What a node's create checks before its VMs come up, and what its VMs do when they boot.

Before: capacity as GCP decides it when the create operation runs. A reserved node takes
chips from one of its project's reservations in the zone (else the operation fails with
GCP's "Insufficient reserved capacity" text, code 8); an on-demand, spot or preemptible one
fails with the stockout text in a stocked-out zone (a reservation is capacity held for you,
so a stockout does not touch it); a node of a queued resource was admitted by its queued
resource (queued.py). Then its data disks attach (disks.py), or the operation fails.

At boot (create, start, emulator restart): the data disks appear on every worker, then the
startup scripts run (startup.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tpuctl.emulator import catalog, startup
from tpuctl.emulator.core import Core
from tpuctl.emulator.errors import CODE_RESOURCE_EXHAUSTED
from tpuctl.emulator.nodeviews import hostname
from tpuctl.emulator.reservations import INSUFFICIENT_MESSAGE, Want
from tpuctl.emulator.resources import NodeRecord, parse_location


def admit(core: Core, rec: NodeRecord) -> tuple[int, str] | None:
    """Capacity and disks for a CREATING node, taken now; or why its create fails."""
    project, zone = parse_location(rec.name.rsplit("/nodes/", 1)[0])
    faults = core.faults
    sched: dict[str, Any] = rec.resource.get("schedulingConfig") or {}
    if not rec.resource.get("queuedResource"):
        if sched.get("reserved"):
            if rec.reservation is None:
                acc = catalog.find_accelerator(zone, str(rec.resource["acceleratorType"]))
                picked = None if acc is None else core.reservations.assign(
                    project, zone, "-", [Want(rec.name, acc)])
                if picked is None:
                    return CODE_RESOURCE_EXHAUSTED, INSUFFICIENT_MESSAGE.format(eid=faults.eid())
                rec.reservation = picked[rec.name]
        elif faults.stocked_out(zone):
            return CODE_RESOURCE_EXHAUSTED, faults.stockout_message(zone)
    return core.disks.check_attach(rec)


def release(core: Core, rec: NodeRecord) -> None:
    """A node that is gone (deleted, or its create failed) holds nothing any more."""
    rec.reservation = None
    core.disks.detach(rec.name)


async def attach_disks(core: Core, rec: NodeRecord) -> None:
    attach = getattr(core.workers, "attach_disks", None)
    if attach is not None:
        await asyncio.to_thread(attach, rec.key, core.disks.devices(rec))


def run_startup_scripts(core: Core, rec: NodeRecord) -> None:
    """The node is READY: every worker runs its startup scripts (in the background)."""
    run = getattr(core.workers, "run_startup_scripts", None)
    if run is None:
        return
    project = parse_location(rec.name.rsplit("/nodes/", 1)[0])[0]
    found = startup.scripts(rec.resource.get("metadata") or {}, core.projects.metadata(project))
    run(rec.key, found, [hostname(rec, i) for i in range(rec.hosts)])
