"""The REST API driving the real SSH worker host: keys from metadata, host keys from guest
attributes, stop/start keeping addresses, keys and homes, and an emulator restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from google.api_core import exceptions, retry
from google.api_core.future import polling
from google.cloud import tpu_v2
from google.protobuf import field_mask_pb2

from tests.conftest import create_keyed_node, ssh_endpoints, tpu_client
from tpuctl.emulator.server import run_in_thread

PARENT = "projects/real/locations/local-a"
NAME = f"{PARENT}/nodes/real-node"
POLL = retry.Retry(predicate=polling.POLLING_PREDICATE, initial=0.02, maximum=0.1, timeout=30)
# key changes apply at once: these tests check what keys work after each change, not when
# (tests/emulator/test_oslogin.py tests the guest-agent delay)
AT_ONCE = {"guest-agent-delay": 0}


def _workers(client: Any) -> list[tuple[str, int, str]]:
    return ssh_endpoints(client, NAME)


async def _run(ip: str, port: int, host_key: str, key: asyncssh.SSHKey, cmd: str) -> str:
    known = asyncssh.import_known_hosts(f"[{ip}]:{port} {host_key}\n")
    async with asyncssh.connect(
        ip, port, username="alice", client_keys=[key], known_hosts=known, connect_timeout=10
    ) as conn:
        result = await conn.run(cmd, check=True)
        return str(result.stdout)


def _ssh(worker: tuple[str, int, str], key: asyncssh.SSHKey, cmd: str) -> str:
    return asyncio.run(asyncio.wait_for(_run(*worker, key, cmd), timeout=20))


@pytest.mark.timeout(120)
def test_real_workers_through_the_api(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    pub = key.export_public_key("openssh").decode().strip()
    with run_in_thread(tmp_path, create_delay=0.05, faults=AT_ONCE) as endpoint:
        info = json.loads((tmp_path / "emulator.json").read_text())
        assert info["endpoint"] == endpoint and info["ssh_port"] > 0
        client = tpu_client(endpoint, tmp_path)
        workers = create_keyed_node(client, PARENT, "real-node", pub, POLL)
        assert len(workers) == 4 and all(w[1] == info["ssh_port"] for w in workers)
        out = _ssh(workers[1], key, 'echo "$TPU_WORKER_ID $JAX_PLATFORMS"; echo hi > ~/mark')
        assert out.split() == ["1", "cpu"]

        # keys come from the *current* metadata
        client.update_node(
            node=tpu_v2.Node(name=NAME, metadata={"ssh-keys": "bob:ssh-ed25519 AAAAC3Nz bob"}),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        ).result(timeout=30, polling=POLL)
        with pytest.raises(asyncssh.PermissionDenied):
            _ssh(workers[0], key, "true")
        client.update_node(
            node=tpu_v2.Node(name=NAME, metadata={"ssh-keys": f"alice:{pub}"}),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        ).result(timeout=30, polling=POLL)

        client.stop_node(request={"name": NAME}).result(timeout=30, polling=POLL)
        with pytest.raises(OSError):
            _ssh(workers[1], key, "true")
        client.start_node(request={"name": NAME}).result(timeout=30, polling=POLL)
        assert _workers(client) == workers  # same addresses, same host keys
        assert _ssh(workers[1], key, "cat ~/mark").strip() == "hi"  # home kept

    # a restarted emulator keeps the node and brings its workers back
    assert not (tmp_path / "emulator.json").exists()
    with run_in_thread(tmp_path, create_delay=0.05, faults=AT_ONCE) as endpoint:
        client = tpu_client(endpoint, tmp_path)
        assert client.get_node(name=NAME).state == tpu_v2.Node.State.READY
        assert _workers(client) == workers
        assert _ssh(workers[3], key, "echo $TPU_WORKER_ID").strip() == "3"
        client.delete_node(name=NAME).result(timeout=30, polling=POLL)
        with pytest.raises(exceptions.NotFound):
            client.get_node(name=NAME)
        assert not (tmp_path / "nodes" / "real.local-a.real-node").exists()


def test_real_host_v6e_256_has_64_workers_with_distinct_host_keys(tmp_path: Path) -> None:
    with run_in_thread(tmp_path, create_delay=0.01) as endpoint:
        client = tpu_client(endpoint, tmp_path)
        name = f"{PARENT}/nodes/big"
        node = client.create_node(
            parent=PARENT,
            node_id="big",
            node=tpu_v2.Node(accelerator_type="v6e-256", runtime_version="v2-alpha-tpuv6e"),
        ).result(timeout=30, polling=POLL)
        ips = [e.ip_address for e in node.network_endpoints]
        assert len(ips) == len(set(ips)) == 64
        attrs = client.get_guest_attributes(request={"name": name}).guest_attributes
        keys = {i.value for ga in attrs for i in ga.query_value.items if i.namespace == "hostkeys"}
        assert len(attrs) == 64 and len(keys) == 64
        client.delete_node(name=name).result(timeout=30, polling=POLL)
