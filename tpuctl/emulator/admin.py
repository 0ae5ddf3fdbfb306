"""The emulator's own admin calls under `/emulator/v1/` (status, preemption, dropped
connections, faults, the bastion): not part of the TPU API, and faults never apply to
them."""

from __future__ import annotations

import os
from typing import Any

from tpuctl.emulator import addressing
from tpuctl.emulator.calls import INFO_KEY, Call, Reply
from tpuctl.emulator.errors import invalid_argument, not_found
from tpuctl.emulator.faults import FaultError, parse_seed
from tpuctl.emulator.nodeviews import hostname


async def admin_status(call: Call) -> Reply:
    state = call.state
    nodes = [
        {
            "name": rec.name,
            "state": rec.state,
            "slot": rec.slot,
            "workers": [
                {"index": w["index"], "ip": w["ip"], "ssh_port": w["ssh_port"],
                 "external_ip": addressing.external_ip(rec.slot, int(w["index"]))
                 if state.faults.cloud_network else w["ip"]}
                for w in rec.workers
            ],
        }
        for rec in state.nodes.values()
    ]
    stored: dict[str, Any] = call.request.app[INFO_KEY]
    info = dict(stored)
    info.setdefault("pid", os.getpid())
    return Reply("", {**info, "ssh_port": state.ssh_port, "nodes": nodes})


async def admin_drop_connections(call: Call) -> Reply:
    worker = call.request.query.get("worker")
    return Reply("", call.state.drop_connections(call.group("name"),
                                                 int(worker) if worker else None))


async def admin_preempt(call: Call) -> Reply:
    after = call.query.get("after")
    if after is None or after == "":
        return Reply("Node", await call.state.preempt_node(call.group("name")))
    try:
        seconds = float(after)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e7:  # also rejects nan and inf
        raise invalid_argument(f"after must be a number of seconds >= 0, got {after!r}")
    return Reply("", call.state.schedule_preempt(call.group("name"), seconds))


async def admin_get_faults(call: Call) -> Reply:
    return Reply("", call.state.faults.to_json())


async def admin_set_faults(call: Call) -> Reply:
    """Merge the faults of the JSON body (`null` clears one); `seed` restarts the streams."""
    body = await call.body()
    faults = call.state.faults
    try:
        seed = parse_seed(body.pop("seed")) if "seed" in body else None
        faults.update(body)
    except FaultError as e:
        raise invalid_argument(str(e)) from e
    if seed is not None:
        faults.reseed(seed)
    await call.state.apply_faults()
    return Reply("", faults.to_json())


async def admin_clear_faults(call: Call) -> Reply:
    call.state.faults.clear()
    await call.state.apply_faults()
    return Reply("", call.state.faults.to_json())


async def admin_get_bastion(call: Call) -> Reply:
    return Reply("", call.state.bastion.info())


async def admin_set_bastion(call: Call) -> Reply:
    """Start the bastion (or give it new keys or a new network); answers where it listens."""
    return Reply("", await call.state.bastion.configure(await call.body()))


async def admin_delete_bastion(call: Call) -> Reply:
    await call.state.bastion.stop(forget=True)
    return Reply("", {})


async def admin_iap_instance(call: Call) -> Reply:
    """What the IAP stand-in (iap.py) asks: which worker a GCE instance name is. 404 unless
    a running worker of a node in that project and zone has that hostname."""
    parent = f"projects/{call.group('project')}/locations/{call.group('zone')}/nodes/"
    wanted = call.group("instance")
    for rec in call.state.nodes.values():
        if not rec.name.startswith(parent) or rec.state != "READY":
            continue
        for w in rec.workers:
            if hostname(rec, int(w["index"])) == wanted:
                return Reply("", {"node": rec.name, "worker": w["index"],
                                  "internalIp": w["ip"]})
    raise not_found(f"projects/{call.group('project')}/zones/{call.group('zone')}"
                    f"/instances/{wanted}")
