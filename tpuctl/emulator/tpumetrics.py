"""Each emulated worker's stand-in for libtpu's runtime metrics service: the same gRPC
service (`tpu.monitoring.runtime.RuntimeMetricService/GetRuntimeMetric`), the same messages
and metric names (tpuctl/remote/tpu_metrics.py encodes them), the same transport (gRPC local
credentials on a loopback TCP port), answering from the worker's real CPU use
(emulator/usage.py).

Differences from a TPU VM (docs/emulator.md): workers share this machine's loopback, so each
worker's server listens on its own port of 127.0.0.1 (gRPC's local credentials accept no other
address) instead of localhost:8431, and the worker's login environment names it
(`TPUCTL_TPU_METRICS_ADDR`, read by top.sh); the server is up for the worker's life and
answers UNAVAILABLE while no workload runs, where libtpu's exists only inside the workload (a
reader sees UNAVAILABLE either way); ListSupportedMetrics and the other metrics are not served.

The servers are grpc.aio servers on the emulator's event loop: a listening socket per worker
and no thread (1,024 of them start in 0.07 s; a thread-per-server grpc.server took 1.2 s and
1,024 threads), the /proc sampling done off the loop.

Hooks: `hosts.WorkerHost` starts a node's servers after its listeners and stops them with it;
`vms.VmWorker.env` adds `worker_env`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from tpuctl.emulator.usage import WORKER_ENV, WorkerUsage, marker, session_groups_of
from tpuctl.remote import tpu_metrics as wire

if TYPE_CHECKING:
    from tpuctl.emulator.vms import VmNode, VmWorker

log = logging.getLogger(__name__)

ADDR_ENV = "TPUCTL_TPU_METRICS_ADDR"
SERVICE = "tpu.monitoring.runtime.RuntimeMetricService"
DEFAULT_HBM_GIB = 16
# node → worker index → (gRPC server, its address); by node object: a process may hold
# several worker hosts (tests), each with its own nodes
_servers: weakref.WeakKeyDictionary[VmNode, dict[int, tuple[Any, str]]] = \
    weakref.WeakKeyDictionary()


def worker_env(worker: VmWorker) -> dict[str, str]:
    """What a login on this worker gets: its workload marker and its metrics address."""
    env = {WORKER_ENV: marker(worker.node.marker, worker.index)}
    running = _servers.get(worker.node, {}).get(worker.index)
    if running is not None:
        env[ADDR_ENV] = running[1]
    return env


def _hbm_per_chip(node: VmNode) -> int:
    """The node's generation's HBM per chip (from its record, through the world)."""
    from tpuctl.accelerators import parse_accelerator

    world = node.world()
    rec: Any = getattr(world, "record", lambda _: None)(node.node_id)
    try:
        gib = parse_accelerator(rec.resource["acceleratorType"]).generation.hbm_gib_per_chip
    except Exception:  # a fake world, a record without a type: the emulator's default
        gib = DEFAULT_HBM_GIB
    return int(gib) * 2**30


def _handler(usage: WorkerUsage) -> Any:
    import grpc

    known = (wire.DUTY, wire.HBM_USED, wire.HBM_TOTAL)

    async def get(request: bytes, context: Any) -> bytes:
        name = wire.decode_request(request)
        if name not in known:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"metric {name!r} is not served here")
        got = await asyncio.to_thread(usage.read)  # /proc, and a short sleep: off the loop
        if got is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no workload is using the TPU")
        duty, used = got  # type: ignore[misc]  # abort raised otherwise
        values: list[tuple[int, int | float]]
        if name == wire.DUTY:
            values = list(enumerate(duty))
        elif name == wire.HBM_USED:
            values = list(enumerate(used))
        else:
            values = [(i, usage.hbm_per_chip) for i in range(usage.chips)]
        return wire.encode_response(name, values)

    return grpc.method_handlers_generic_handler(
        SERVICE, {"GetRuntimeMetric": grpc.unary_unary_rpc_method_handler(get)})


async def _start(node: VmNode) -> None:
    import grpc

    hbm = _hbm_per_chip(node)
    groups = session_groups_of(node.pgids)
    mine = _servers.setdefault(node, {})
    for w in node.workers:
        if w.index in mine:
            continue
        usage = WorkerUsage(marker(node.marker, w.index), node.chips_per_host, hbm, groups)
        server = grpc.aio.server(handlers=[_handler(usage)], maximum_concurrent_rpcs=16)
        port = server.add_secure_port(
            "127.0.0.1:0", grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP))
        await server.start()
        mine[w.index] = (server, f"127.0.0.1:{port}")


async def start_node(node: VmNode) -> None:
    """Every worker's metrics server (a failure is logged: top then shows no TPU metrics)."""
    try:
        await _start(node)
    except Exception as e:  # never a reason for a node not to start
        log.warning("node %s: no TPU metrics servers: %s", node.node_id, e)
        await stop_node(node)


async def stop_node(node: VmNode) -> None:
    servers = [server for server, _ in _servers.pop(node, {}).values()]
    await asyncio.gather(*(server.stop(None) for server in servers), return_exceptions=True)
