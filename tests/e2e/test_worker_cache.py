"""The worker cache through the real CLI: fast when fresh, refreshed when the node changed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import Cli, Emulator, tpu_client

pytestmark = pytest.mark.e2e

PARENT = "projects/local-project/locations/local-a"


def _exec_true(cli: Cli, name: str, *py_flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *py_flags, "-m", "tpuctl", "exec", name, "--", "true"],
                          capture_output=True, text=True, timeout=120, env=cli.env(),
                          stdin=subprocess.DEVNULL, cwd=cli.home)


def test_a_repeated_command_reaches_the_workers_without_google_cloud(cli: Cli,
                                                                   node_name: str) -> None:
    assert cli("create", node_name, "--type", "v6e-16").returncode == 0
    try:
        r = _exec_true(cli, node_name, "-X", "importtime")
        assert r.returncode == 0, r.stderr
        assert "4/4 workers ok" in r.stderr
        assert "google.cloud" not in r.stderr  # answered from the cache create wrote
        assert "asyncssh" in r.stderr  # (the import log is really there)
    finally:
        cli("delete", node_name, "--yes")


def test_a_node_recreated_behind_tpuctls_back_is_re_read(cli: Cli, emulator: Emulator,
                                                         node_name: str) -> None:
    """Deleted and recreated with gcloud (say): new host keys, our key not yet authorized.
    The cached entry fails the host key check, tpuctl re-reads the node, re-pins and runs."""
    from google.cloud import tpu_v2

    assert cli("create", node_name, "--type", "v6e-16").returncode == 0
    client = tpu_client(emulator.endpoint, emulator.state_dir)
    full = f"{PARENT}/nodes/{node_name}"
    client.delete_node(request={"name": full}).result(timeout=60)
    client.create_node(request={
        "parent": PARENT, "node_id": node_name,
        "node": tpu_v2.Node(accelerator_type="v6e-16", runtime_version="v2-alpha-tpuv6e",
                            labels={"managed-by": "tpuctl"},  # external IPs, as gcloud asks
                            network_config=tpu_v2.NetworkConfig(enable_external_ips=True)),
    }).result(timeout=60)
    try:
        r = cli("exec", node_name, "--", "bash", "-c", "echo $TPU_WORKER_ID")
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.split()) == ["0", "1", "2", "3", "[w0]", "[w1]", "[w2]", "[w3]"]
    finally:
        cli("delete", node_name, "--yes")


def test_a_preempted_node_with_a_cached_list_exits_6_quickly(cli: Cli, emulator: Emulator,
                                                             node_name: str) -> None:
    assert cli("create", node_name, "--type", "v6e-16", "--spot").returncode == 0
    emulator.admin("POST", f"{PARENT}/nodes/{node_name}:preempt")
    try:
        t0 = time.monotonic()
        r = cli("exec", node_name, "--", "true")
        assert r.returncode == 6, r.stderr
        assert "PREEMPTED" in r.stderr
        assert time.monotonic() - t0 < 15  # one quick failed connect, then the API
    finally:
        cli("delete", node_name, "--yes")
