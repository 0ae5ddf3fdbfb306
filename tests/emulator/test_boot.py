"""What real emulated VMs do at boot and with storage: a node's startup-script runs on every
worker after READY (logged where a TPU VM logs it, read with journalctl, again at every
boot, killed with the node); data disks appear unformatted where a TPU VM has them and a
worker formats and mounts one with the same commands as on GCP; a multislice group's
slices reach each other inside their VPC and read their place from the metadata server."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest
from google.api_core import retry
from google.api_core.future import polling
from google.cloud import tpu_v2

from tests.conftest import tpu_client, wait_until
from tests.emulator.conftest import TOKEN
from tests.emulator.test_capacity import admin

PARENT = "projects/boot/locations/local-a"
DISKS = "/emulator/v1/projects/boot/zones/local-a/disks"
POLL = retry.Retry(predicate=polling.POLLING_PREDICATE, initial=0.02, maximum=0.1, timeout=30)
USER = "alice"
JOURNAL = "journalctl -b -u google-startup-scripts.service -o cat --no-pager"
# the mount step a worker runs, the same on GCP (TPUCTL_EMULATOR_ROOT unset there)
MOUNT = r"""set -euo pipefail
R=${TPUCTL_EMULATOR_ROOT:-}
DEV=$R/dev/disk/by-id/google-persistent-disk-1 MNT=$R/mnt/disks/data
sudo blkid "$DEV" >/dev/null || sudo mkfs.ext4 -q -m 0 -E lazy_itable_init=0,discard "$DEV"
sudo mkdir -p "$MNT"
mountpoint -q "$MNT" || sudo mount -o discard,defaults "$DEV" "$MNT"
"""


@dataclass
class Boot:
    endpoint: str
    client: Any
    key: asyncssh.SSHKey

    def create(self, node_id: str, acc: str = "v4-16", **kw: Any) -> Any:
        pub = self.key.export_public_key("openssh").decode().strip()
        metadata = {"ssh-keys": f"{USER}:{pub}", **kw.pop("metadata", {})}
        return self.client.create_node(parent=PARENT, node_id=node_id, node=tpu_v2.Node(
            accelerator_type=acc, runtime_version="tpu-ubuntu2204-base", metadata=metadata,
            network_config=tpu_v2.NetworkConfig(enable_external_ips=True), **kw),
        ).result(timeout=30, polling=POLL)

    def run(self, node: Any, index: int, cmd: str, check: bool = True) -> str:
        ep = node.network_endpoints[index]
        port = admin(self.endpoint, "GET", "/emulator/v1/status")[1]["ssh_port"]

        async def go() -> str:
            async with asyncssh.connect(ep.access_config.external_ip, port, username=USER,
                                        client_keys=[self.key], known_hosts=None,
                                        connect_timeout=10) as conn:
                result = await conn.run(cmd, check=check)
                return str(result.stdout) + str(result.stderr)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boot]:
    from tpuctl.emulator.server import run_in_thread

    state = tmp_path_factory.mktemp("boot")
    # keys at once (guest-agent-delay 0): this module is about boots (test_oslogin.py tests
    # the delay)
    with run_in_thread(state, create_delay=0.02, token=TOKEN,
                       faults={"network": "cloud", "guest-agent-delay": 0}) as endpoint:
        yield Boot(endpoint, tpu_client(endpoint, TOKEN), asyncssh.generate_private_key(
            "ssh-ed25519"))


def test_startup_script_runs_on_every_worker_at_every_boot(boot: Boot) -> None:
    script = ('#!/bin/bash\necho "hello from $(whoami) on worker $TPU_WORKER_ID"\n'
              'echo boot >> "$HOME/boots"\necho to-stderr >&2\nsleep 0.3\nexit 3\n')
    node = boot.create("script", metadata={"startup-script": script})
    for i in range(2):
        log = wait_until(lambda i=i: boot.run(node, i, JOURNAL),  # type: ignore[misc]
                         lambda out: "Finished running startup scripts." in out)
        assert log.splitlines() == [
            "Starting startup scripts (version 20240701.00).",
            "Found startup-script in metadata.",
            f"startup-script: hello from root on worker {i}",
            "startup-script: to-stderr",
            "startup-script exit status 3",
            "Finished running startup scripts."]
    # the journal's own format without -o cat, as on a VM
    assert "google_metadata_script_runner[" in boot.run(node, 0, "journalctl -u "
                                                        "google-startup-scripts.service")
    boot.client.stop_node(request={"name": node.name}).result(timeout=30, polling=POLL)
    boot.client.start_node(request={"name": node.name}).result(timeout=30, polling=POLL)
    wait_until(lambda: boot.run(node, 1, JOURNAL), lambda out: "exit status 3" in out)
    assert boot.run(node, 1, "cat ~/boots").split() == ["boot", "boot"]  # once per boot
    boot.client.delete_node(name=node.name).result(timeout=30, polling=POLL)


def test_startup_script_dies_with_its_node_and_none_is_reported(boot: Boot) -> None:
    node = boot.create("sleeper", acc="v6e-8", metadata={
        "startup-script": 'echo "$$" > "$HOME/pid"\nexec sleep 300\n'})
    pid = int(wait_until(lambda: boot.run(node, 0, "cat ~/pid 2>/dev/null || true"),
                         lambda out: out.strip().isdigit()))
    assert "Finished" not in boot.run(node, 0, JOURNAL)  # still running
    boot.client.stop_node(request={"name": node.name}).result(timeout=30, polling=POLL)
    wait_until(lambda: os.path.exists(f"/proc/{pid}"), lambda alive: not alive)
    boot.client.delete_node(name=node.name).result(timeout=30, polling=POLL)

    plain = boot.create("plain", acc="v6e-8")
    assert wait_until(lambda: boot.run(plain, 0, JOURNAL),
                      lambda out: "No startup scripts" in out).splitlines()[-1] == (
        "No startup scripts to run.")
    boot.client.delete_node(name=plain.name).result(timeout=30, polling=POLL)


def test_a_data_disk_is_formatted_mounted_and_kept(boot: Boot) -> None:
    from tpuctl.emulator.vms import with_sbin

    if not shutil.which("mkfs.ext4", path=with_sbin(os.environ.get("PATH", ""))):
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed on this machine")
    assert admin(boot.endpoint, "POST", DISKS, {"name": "ckpt", "sizeGb": 1})[0] == 200
    source = "projects/boot/zones/local-a/disks/ckpt"
    writer = boot.create("writer", acc="v6e-8",
                         data_disks=[tpu_v2.AttachedDisk(source_disk=source)])
    # unformatted, where a TPU VM has it
    out = boot.run(writer, 0, 'R=$TPUCTL_EMULATOR_ROOT; readlink "$R/dev/disk/by-id/'
                   'google-persistent-disk-1"; cat "$R/sys/block/sdb/ro"; '
                   'blkid "$R/dev/sdb" || echo "blank $?"', check=False)
    assert out.split() == ["../../sdb", "0", "blank", "2"]
    out = boot.run(writer, 0, MOUNT + 'echo kept > "$MNT/file"; mountpoint "$MNT"; '
                   'sudo umount "$MNT"; ls -A "$MNT"; mount "$DEV" "$MNT"; cat "$MNT/file"')
    assert "is a mountpoint" in out and out.split()[-1] == "kept"
    refused = boot.run(writer, 0, 'mkdir -p /tmp/x-$$ && mount "$TPUCTL_EMULATOR_ROOT/dev/sdb" '
                       '/tmp/x-$$; echo "rc=$?"; rmdir /tmp/x-$$', check=False)
    assert "outside this worker's root" in refused and "rc=32" in refused
    boot.client.delete_node(name=writer.name).result(timeout=30, polling=POLL)

    # read-only on every worker of a multi-host node: the same files, and no writer
    reader = boot.create("reader", data_disks=[tpu_v2.AttachedDisk(
        source_disk=source, mode=tpu_v2.AttachedDisk.DiskMode.READ_ONLY)])
    for i in range(2):
        out = boot.run(reader, i, MOUNT + 'cat "$MNT/file"; cat "$R/sys/block/sdb/ro"')
        assert "mounted read-only" in out and out.startswith("kept\n1\n")
    boot.client.delete_node(name=reader.name).result(timeout=30, polling=POLL)
    assert admin(boot.endpoint, "DELETE", f"{DISKS}/ckpt") == (200, {})


def test_multislice_slices_reach_each_other_inside_their_vpc(boot: Boot) -> None:
    pub = boot.key.export_public_key("openssh").decode().strip()
    qr = f"{PARENT}/queuedResources/pair"
    boot.client.create_queued_resource(
        parent=PARENT, queued_resource_id="pair", queued_resource=tpu_v2.QueuedResource(
            tpu=tpu_v2.QueuedResource.Tpu(node_spec=[tpu_v2.QueuedResource.Tpu.NodeSpec(
                parent=PARENT,
                multislice_params=tpu_v2.QueuedResource.Tpu.NodeSpec.MultisliceParams(
                    node_count=2),
                node=tpu_v2.Node(
                    accelerator_type="v4-16", runtime_version="tpu-ubuntu2204-base",
                    metadata={"ssh-keys": f"{USER}:{pub}"},
                    network_config=tpu_v2.NetworkConfig(enable_external_ips=True)))])),
    ).result(timeout=30)
    wait_until(lambda: boot.client.get_queued_resource(name=qr).state.state,
               lambda s: s == tpu_v2.QueuedResourceState.State.ACTIVE, timeout=30)
    first, second = (boot.client.get_node(name=f"{PARENT}/nodes/pair-{i}") for i in range(2))
    coordinator = first.network_endpoints[0].ip_address
    port = admin(boot.endpoint, "GET", "/emulator/v1/status")[1]["ssh_port"]
    own = second.network_endpoints[1].ip_address  # slice 1, worker 1, its internal address
    probe = ("python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(2); "
             "s.bind((sys.argv[1], 0)); s.connect((sys.argv[2], int(sys.argv[3]))); "
             f"print(s.recv(7).decode())' {own} {coordinator} {port}")
    out = boot.run(second, 1, probe)
    assert out.strip() == "SSH-2.0"  # inside the VPC: slice 0's worker 0 answers
    env = boot.run(second, 1, 'curl -s -H "Metadata-Flavor: Google" "http://$GCE_METADATA_HOST'
                   '/computeMetadata/v1/instance/attributes/tpu-env"')
    assert f"MEGASCALE_COORDINATOR_ADDRESS: '{coordinator}:8080'" in env
    assert "MEGASCALE_SLICE_ID: '1'" in env and "MEGASCALE_NUM_SLICES: '2'" in env
    started = time.monotonic()
    boot.client.delete_queued_resource(request={"name": qr, "force": True}).result(timeout=30)
    assert time.monotonic() - started < 30
