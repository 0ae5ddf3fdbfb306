"""The emulator at 1,024 workers: one multislice queued resource (default 8 x v4-1024, 128
hosts each) served by one `tpuctl emulator serve` process on this machine.

Measured (emulator process, from /proc): resident memory idle, with every worker listening,
at the peak of an SSH fan-out (`true` on every worker, new connections, from this process
with asyncssh) and after; open files; CPU seconds per phase; wall time from the create call
to ACTIVE (every worker's SSH server listening), of the fan-out and of the forced delete.

    python benchmarks/emulator_scale.py                      # 8 x v4-1024, cloud network
    python benchmarks/emulator_scale.py --slices 2 --type v6e-256 --network flat

A measurement, not a test: nothing here fails CI. Results: benchmarks/results/
emulator_scale.json and docs/emulator.md ("Scale").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import Bench, machine, proc_cpu_s, proc_hwm_kb, table, write_results

PROJECT, ZONE = "bench", "local-a"
PARENT = f"projects/{PROJECT}/locations/{ZONE}"
TARGET_RSS_MB = 2048


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def admin(b: Bench, method: str, path: str, body: Any = None) -> Any:
    token = (b.state / "token").read_text().strip()
    req = urllib.request.Request(b.endpoint + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"{}")


def client(b: Bench) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.cloud import tpu_v2
    from google.oauth2.credentials import Credentials

    token = (b.state / "token").read_text().strip()
    return tpu_v2.TpuClient(transport="rest", credentials=Credentials(token),
                            client_options=ClientOptions(api_endpoint=b.endpoint))


async def fan_out(targets: list[tuple[str, int, str]], key: Any, limit: int) -> list[int]:
    """`true` on every worker over new connections (at most `limit` at once)."""
    import asyncssh

    gate = asyncio.Semaphore(limit)

    async def one(ip: str, port: int, host_key: str) -> int:
        async with gate:
            known = asyncssh.import_known_hosts(f"[{ip}]:{port} {host_key}\n")
            async with asyncssh.connect(ip, port, username="bench", client_keys=[key],
                                        known_hosts=known, connect_timeout=60) as conn:
                result = await conn.run("true")
                return int(result.exit_status or 0)

    return list(await asyncio.gather(*(one(*t) for t in targets)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=8)
    ap.add_argument("--type", default="v4-1024", help="accelerator type of each slice")
    ap.add_argument("--network", choices=("cloud", "flat"), default="cloud")
    ap.add_argument("--limit", type=int, default=512, help="connections at once")
    args = ap.parse_args()

    import asyncssh
    from google.cloud import tpu_v2

    key = asyncssh.generate_private_key("ssh-ed25519")
    pub = key.export_public_key("openssh").decode().strip()
    with Bench(create_delay=0.2) as b:
        pid = b.proc.pid if b.proc else 0
        admin(b, "POST", "/emulator/v1/faults", {"network": args.network})
        c = client(b)
        idle_kb, cpu0 = rss_kb(pid), proc_cpu_s(pid)
        spec = tpu_v2.QueuedResource.Tpu.NodeSpec(
            parent=PARENT,
            multislice_params=tpu_v2.QueuedResource.Tpu.NodeSpec.MultisliceParams(
                node_count=args.slices, node_id_prefix="scale"),
            node=tpu_v2.Node(accelerator_type=args.type, runtime_version="tpu-ubuntu2204-base",
                             metadata={"ssh-keys": f"bench:{pub}"},
                             network_config=tpu_v2.NetworkConfig(enable_external_ips=True)))
        qr_name = f"{PARENT}/queuedResources/scale"
        t0 = time.perf_counter()
        c.create_queued_resource(parent=PARENT, queued_resource_id="scale",
                                 queued_resource=tpu_v2.QueuedResource(
                                     tpu=tpu_v2.QueuedResource.Tpu(node_spec=[spec]))).result(60)
        while c.get_queued_resource(name=qr_name).state.state != \
                tpu_v2.QueuedResourceState.State.ACTIVE:
            if time.perf_counter() - t0 > 600:
                raise SystemExit("the queued resource did not become ACTIVE in 10 minutes")
            time.sleep(0.1)
        create_s = time.perf_counter() - t0
        ready_kb, ready_files, cpu1 = rss_kb(pid), open_files(pid), proc_cpu_s(pid)

        targets = []
        for i in range(args.slices):
            node = c.get_node(name=f"{PARENT}/nodes/scale-{i}")
            attrs = c.get_guest_attributes(request={"name": node.name}).guest_attributes
            for ep, ga in zip(node.network_endpoints, attrs, strict=True):
                items = {it.key: it.value for it in ga.query_value.items}
                ip = ep.access_config.external_ip or ep.ip_address
                targets.append((ip, int(items["ssh-port"]), f"ssh-ed25519 {items['ssh-ed25519']}"))
        t1 = time.perf_counter()
        codes = asyncio.run(fan_out(targets, key, args.limit))
        fan_s = time.perf_counter() - t1
        peak_kb, after_kb, cpu2 = proc_hwm_kb(pid) or 0, rss_kb(pid), proc_cpu_s(pid)

        t2 = time.perf_counter()
        c.delete_queued_resource(request={"name": qr_name, "force": True}).result(600)
        delete_s = time.perf_counter() - t2
        gone_kb = rss_kb(pid)

    workers = len(targets)
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    result = {
        "machine": machine(),
        "config": {"slices": args.slices, "type": args.type, "workers": workers,
                   "network": args.network, "external_ips": True, "limit": args.limit},
        "create_to_active_s": round(create_s, 2),
        "fanout_true_s": round(fan_s, 2), "fanout_failures": sum(1 for x in codes if x),
        "delete_s": round(delete_s, 2),
        "emulator_rss_mb": {"idle": mb(idle_kb), "active": mb(ready_kb),
                            "fanout_peak": mb(peak_kb), "after_fanout": mb(after_kb),
                            "deleted": mb(gone_kb)},
        "emulator_open_files_active": ready_files,
        "emulator_cpu_s": {"create": round(cpu1 - cpu0, 2), "fanout": round(cpu2 - cpu1, 2)},
        "target_rss_mb": TARGET_RSS_MB, "rss_target_met": peak_kb / 1024 < TARGET_RSS_MB,
    }
    print(table(["measure", "value"], [
        ["workers", f"{workers} ({args.slices} x {args.type}, network {args.network})"],
        ["create -> ACTIVE", f"{create_s:.2f} s"],
        ["fan-out `true`, new connections", f"{fan_s:.2f} s ({result['fanout_failures']} failed)"],
        ["delete (force)", f"{delete_s:.2f} s"],
        ["emulator RSS idle / active / peak", f"{mb(idle_kb)} / {mb(ready_kb)} / {mb(peak_kb)} MB"],
        ["emulator open files (active)", str(ready_files)],
        ["emulator CPU create / fan-out", f"{cpu1 - cpu0:.1f} / {cpu2 - cpu1:.1f} s"],
    ]))
    print(f"results: {write_results('emulator_scale', result)}")


if __name__ == "__main__":
    main()
