"""The faults issue 15 adds, from their keys to what a user sees: validated strictly, a READY
node whose last workers never registered (or none at all), and the worker faults `doctor`
must detect, set at run time through the admin endpoint and gone when cleared."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from google.cloud import tpu_v2

from tests.conftest import tpu_client
from tests.emulator.conftest import TOKEN, FakeWorkerHost
from tests.emulator.test_faults import _admin
from tests.emulator.test_network import POLL
from tests.workers.test_doctor import parse
from tpuctl.emulator.faults import FaultError, parse_assignments, validate
from tpuctl.emulator.server import run_in_thread
from tpuctl.remote import bundle

PARENT = "projects/wf/locations/local-a"


@pytest.mark.parametrize("item", [
    "full-disk=node", "held-tpu=Node:1", "stale-lockfile=n:-1", "stuck-workers=n:x",
    "blocked-ports=n:70000", "blocked-ports=n:1:2:3", "missing-workers=n:0",
    "missing-workers=n:2,n:3", "package-skew=n:1:not a package", "no-ensurepip=Bad_Node",
    "network=vpc", "guest-agent-delay=-1", "guest-agent-delay=nan", "account=nobody",
])
def test_bad_values_are_refused_naming_the_key(item: str) -> None:
    with pytest.raises(FaultError, match=item.split("=")[0]):
        parse_assignments([item])


def test_values_are_canonical() -> None:
    got = parse_assignments(["blocked-ports=n:8476", "blocked-ports=n:2:8482",
                             "package-skew=n:1", "package-skew=n:0:JAXlib",
                             "missing-workers=n:1", "network=cloud",
                             "account=Alice@Example.COM", "no-ensurepip=n,n"])
    assert got == {"blocked-ports": ["n:0:8476", "n:2:8482"],
                   "package-skew": ["n:0:jaxlib", "n:1:jax"], "missing-workers": ["n:1"],
                   "network": "cloud", "account": "alice@example.com", "no-ensurepip": ["n"]}
    assert validate({"full-disk": ["a:1", "a:0,b:2"]}) == {"full-disk": ["a:0", "a:1", "b:2"]}


def test_missing_workers_leave_a_ready_node_short(client: Any, fake_emulator: Any,
                                                  fast_polling: Any,
                                                  unique: Callable[[str], str]) -> None:
    node_id = unique("short")
    name = f"projects/proj/locations/local-a/nodes/{node_id}"
    client.create_node(parent="projects/proj/locations/local-a", node_id=node_id,
                       node=tpu_v2.Node(accelerator_type="v6e-16",
                                        runtime_version="v2-alpha-tpuv6e"),
                       ).result(timeout=10, polling=fast_polling)
    ep = fake_emulator.endpoint

    def seen() -> tuple[Any, int, int]:
        node = client.get_node(name=name)
        attrs = client.get_guest_attributes(request={"name": name}).guest_attributes
        return node.state, len(node.network_endpoints), len(attrs)

    try:
        _admin(ep, "POST", "faults", {"missing-workers": f"{node_id}:1"})
        assert seen() == (tpu_v2.Node.State.READY, 3, 3)
        _admin(ep, "POST", "faults", {"missing-workers": f"{node_id}:4"})
        assert seen() == (tpu_v2.Node.State.READY, 0, 0)  # a node with zero workers
    finally:
        _admin(ep, "POST", "faults", {"missing-workers": None})
    assert seen() == (tpu_v2.Node.State.READY, 4, 4)


async def _doctor(ip: str, port: int, key: asyncssh.SSHKey, target: str) -> dict[str, Any]:
    h, data = bundle()
    async with asyncssh.connect(ip, port, username="wf", client_keys=[key], known_hosts=None,
                                connect_timeout=10) as conn:
        d = f"$HOME/.tpuctl/bin/{h}"
        await conn.run(f'mkdir -p "{d}" && tar -xzf - -C "{d}"', input=data, check=True,
                       encoding=None)
        r = await conn.run(f'bash "{d}/doctor.sh" - {shlex.quote(target)} 0.5', check=True)
        return parse(str(r.stdout))


async def _jax_metadata(ip: str, port: int, key: asyncssh.SSHKey) -> str:
    code = ("from jax._src.clusters.cloud_tpu_cluster import get_metadata as g; "
            "print(g('agent-worker-number')[0], g('worker-network-endpoints')[0])")
    async with asyncssh.connect(ip, port, username="wf", client_keys=[key], known_hosts=None,
                                connect_timeout=10) as conn:
        r = await conn.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}", check=True)
        return str(r.stdout)


def test_the_metadata_server_is_the_workers_own(tmp_path: Path) -> None:
    """Signed per worker, served without the API token, with GCE's header rule."""
    import urllib.error
    import urllib.request

    from tpuctl.emulator.metadata import address

    with run_in_thread(tmp_path, create_delay=0.02, token=TOKEN,
                       worker_host=FakeWorkerHost) as endpoint:
        client = tpu_client(endpoint, TOKEN)
        client.create_node(parent=PARENT, node_id="md", node=tpu_v2.Node(
            accelerator_type="v4-16", runtime_version="tpu-ubuntu2204-base",
            metadata={"startup-script": "echo hi"})).result(timeout=30, polling=POLL)
        base = address(endpoint.removeprefix("http://"), TOKEN, "wf.local-a.md", 1)

        def get(path: str, flavor: bool = True, at: str = base) -> tuple[int, str]:
            req = urllib.request.Request(f"http://{at}/computeMetadata/v1/{path}",
                                         headers={"Metadata-Flavor": "Google"} if flavor else {})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:  # loopback
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("instance/attributes/agent-worker-number") == (200, "1")
        assert get("instance/attributes/startup-script") == (200, "echo hi")
        assert "ZONE: 'local-a'" in get("instance/attributes/tpu-env")[1]
        assert get("instance/network-interfaces/0/ip")[1].startswith("127.")
        assert get("instance/attributes/agent-worker-number", flavor=False)[0] == 403
        assert get("instance/nothing")[0] == 404
        forged = address(endpoint.removeprefix("http://"), "guess", "wf.local-a.md", 1)
        assert get("instance/attributes/agent-worker-number", at=forged)[0] == 404


@pytest.mark.timeout(120)
def test_worker_faults_set_at_run_time_and_cleared(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    pub = key.export_public_key("openssh").decode().strip()
    # keys at once (guest-agent-delay 0): this test is about faults, not the guest agent
    with run_in_thread(tmp_path, create_delay=0.02, token=TOKEN,
                       faults={"guest-agent-delay": 0}) as endpoint:
        client = tpu_client(endpoint, TOKEN)
        node = client.create_node(
            parent=PARENT, node_id="wf",
            node=tpu_v2.Node(accelerator_type="v4-16", runtime_version="tpu-ubuntu2204-base",
                             metadata={"ssh-keys": f"wf:{pub}"},
                             network_config=tpu_v2.NetworkConfig(enable_external_ips=True)),
        ).result(timeout=30, polling=POLL)
        # this machine reaches workers on their external IPs; they reach each other on
        # their internal ones
        ips = [e.ip_address for e in node.network_endpoints]
        ext = [e.access_config.external_ip for e in node.network_endpoints]
        port = int(_admin(endpoint, "GET", "status")[1]["ssh_port"])

        def doctor(i: int) -> dict[str, Any]:
            return asyncio.run(_doctor(ext[i], port, key, f"{ips[0]}:18476"))

        # JAX's own reader of the TPU metadata finds the worker's metadata server
        jax_reads = asyncio.run(_jax_metadata(ext[1], port, key))
        assert jax_reads.split() == ["1", f"unknown:unknown:{ips[0]},unknown:unknown:{ips[1]}"]

        status, _ = _admin(endpoint, "POST", "faults", {
            "full-disk": "wf:1", "held-tpu": "wf:0", "stale-lockfile": "wf:1",
            "blocked-ports": "wf:18476", "no-ensurepip": "wf"})
        assert status == 200
        w0, w1 = doctor(0), doctor(1)
        assert w0["tpu"].status == "fail" and "python3 train.py" in w0["tpu"].detail
        assert w1["disk-home"].status == "fail" and w0["disk-home"].status != "fail"
        assert w1["lockfile"].status == "warn" and w1["tpu"].status == "ok"
        assert w1["port"].fields["result"] == "filtered"
        assert w0["venv"].status == w1["venv"].status == "warn"
        assert _admin(endpoint, "DELETE", "faults")[0] == 200
        w0, w1 = doctor(0), doctor(1)
        assert w0["tpu"].status == "ok" and w1["disk-home"].status != "fail"
        assert w1["port"].fields["result"] == "closed" and w1["venv"].status == "ok"
        assert w1["metadata"].status == "ok" and w1["metadata"].fields == {"worker": "1",
                                                                           "workers": "2"}
        # a host that never registered: listed by the API, its TPU metadata blank
        _admin(endpoint, "POST", "faults", {"missing-workers": "wf:1:blank"})
        assert len(client.get_node(name=f"{PARENT}/nodes/wf").network_endpoints) == 2
        w0, w1 = doctor(0), doctor(1)
        assert w0["metadata"].status == "ok" and w1["metadata"].status == "fail"
        assert "did not register" in w1["metadata"].detail
