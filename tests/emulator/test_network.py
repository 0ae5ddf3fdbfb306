"""Cloud-true addresses on real workers: distinct internal and external addresses per worker;
SSH from outside the emulated VPC only on external ones (an internal address never answers);
inside the VPC workers reach each other's internal addresses, so a worker with an external
IP is a jump host to an internal-only node, through asyncssh and through OpenSSH's `-J`."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from google.api_core import retry
from google.api_core.future import polling
from google.cloud import tpu_v2
from google.protobuf import field_mask_pb2

from tests.conftest import tpu_client, wait_until
from tests.emulator.conftest import TOKEN
from tests.emulator.test_faults import _admin
from tpuctl.emulator.server import run_in_thread

PARENT = "projects/net/locations/local-a"
POLL = retry.Retry(predicate=polling.POLLING_PREDICATE, initial=0.02, maximum=0.1, timeout=30)
USER = "alice"


@dataclass
class Net:
    endpoint: str
    client: Any
    key: asyncssh.SSHKey
    key_file: Path
    tmp: Path
    port: int

    def node(self, node_id: str) -> Any:
        return self.client.get_node(name=f"{PARENT}/nodes/{node_id}")

    def create(self, node_id: str, external: bool, network: str = "default",
               acc: str = "v4-16") -> Any:
        pub = self.key.export_public_key("openssh").decode().strip()
        return self.client.create_node(
            parent=PARENT, node_id=node_id,
            node=tpu_v2.Node(
                accelerator_type=acc, runtime_version="tpu-ubuntu2204-base",
                metadata={"ssh-keys": f"{USER}:{pub}"}, tags=["tpu", "ssh"],
                network_config=tpu_v2.NetworkConfig(network=network,
                                                    enable_external_ips=external)),
        ).result(timeout=30, polling=POLL)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    tmp = tmp_path_factory.mktemp("net")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp / "id_ed25519"
    key_file.write_bytes(key.export_private_key("openssh"))
    key_file.chmod(0o600)
    # keys at once (guest-agent-delay 0): this module is about addresses and ways in
    # (test_oslogin.py tests the delay)
    with run_in_thread(tmp / "state", create_delay=0.02, token=TOKEN,
                       faults={"network": "cloud", "guest-agent-delay": 0}) as endpoint:
        status = _admin(endpoint, "GET", "status")[1]
        n = Net(endpoint, tpu_client(endpoint, TOKEN), key, key_file, tmp, status["ssh_port"])
        n.create("ext", external=True)
        n.create("int", external=False)
        n.create("other", external=True, network="isolated")
        yield n


async def _run(host: str, port: int, key: asyncssh.SSHKey, cmd: str, *,
               tunnel: tuple[str, int] | None = None, timeout: float = 10) -> str:
    opts: dict[str, Any] = dict(username=USER, client_keys=[key], known_hosts=None,
                                connect_timeout=timeout)
    if tunnel is None:
        async with asyncssh.connect(host, port, **opts) as conn:
            return str((await conn.run(cmd, check=True)).stdout)
    async with asyncssh.connect(tunnel[0], tunnel[1], **opts) as jump, \
            jump.connect_ssh(host, port, **opts) as conn:
        return str((await conn.run(cmd, check=True)).stdout)


def ssh(host: str, port: int, key: asyncssh.SSHKey, cmd: str, **kw: Any) -> str:
    return asyncio.run(_run(host, port, key, cmd, **kw))


def openssh(net: Net, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """OpenSSH with a config of its own: the key, no known_hosts (the jump host's process
    reads the same file, which command-line options would not reach)."""
    config = net.tmp / "ssh_config"
    config.write_text(f"Host *\n  IdentityFile {net.key_file}\n  IdentitiesOnly yes\n"
                      "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                      "  BatchMode yes\n  ConnectTimeout 3\n  LogLevel ERROR\n"
                      f"  User {USER}\n  Port {net.port}\n")
    return subprocess.run(["ssh", "-F", str(config), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_internal_and_external_addresses_are_distinct(net: Net) -> None:
    ext, internal = net.node("ext"), net.node("int")
    for ep in ext.network_endpoints:
        assert ep.access_config.external_ip and ep.access_config.external_ip != ep.ip_address
        assert ipaddress.ip_address(ep.access_config.external_ip).is_loopback
    assert [ep.access_config.external_ip for ep in internal.network_endpoints] == ["", ""]
    assert internal.network_config.enable_external_ips is False
    assert ext.network_config.network == "projects/net/global/networks/default"
    assert ext.network_config.subnetwork == "projects/net/regions/local/subnetworks/default"
    assert list(ext.tags) == ["tpu", "ssh"]
    # worker 0 answers on its external address, as itself (its internal address in
    # SSH_CONNECTION, as GCP's 1:1 NAT shows it)
    ep0 = ext.network_endpoints[0]
    out = ssh(ep0.access_config.external_ip, net.port, net.key,
              'echo "$TPU_WORKER_ID ${SSH_CONNECTION##* } $(whoami)"')
    assert out.split()[0] == "0" and out.split()[2] == USER


@pytest.mark.parametrize("node", ["ext", "int"])
def test_an_internal_address_never_answers_from_outside(net: Net, node: str) -> None:
    ip = net.node(node).network_endpoints[1].ip_address
    with pytest.raises((asyncssh.Error, OSError, asyncio.TimeoutError)):
        ssh(ip, net.port, net.key, "true", timeout=1)
    if node == "int":  # OpenSSH too: the banner never comes
        r = openssh(net, "-o", "ConnectTimeout=1", ip, "true", timeout=20)
        assert r.returncode == 255 and "timed out" in r.stderr, r.stderr


def test_a_worker_with_an_external_ip_is_a_jump_host_into_its_vpc(net: Net) -> None:
    jump = net.node("ext").network_endpoints[0].access_config.external_ip
    target = net.node("int").network_endpoints[1].ip_address
    assert ssh(target, net.port, net.key, "echo $TPU_WORKER_ID",
               tunnel=(jump, net.port)).strip() == "1"
    r = openssh(net, "-J", f"{USER}@{jump}:{net.port}", target, "echo $TPU_WORKER_ID")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    # not into another VPC: the node on network "isolated" never answers it
    isolated = net.node("other").network_endpoints[0].ip_address
    with pytest.raises((asyncssh.Error, OSError, asyncio.TimeoutError)):
        ssh(isolated, net.port, net.key, "true", tunnel=(jump, net.port), timeout=1)


def test_external_ips_follow_updates_and_the_network_mode(net: Net) -> None:
    name = f"{PARENT}/nodes/int"
    mask = field_mask_pb2.FieldMask(paths=["network_config.enable_external_ips"])
    net.client.update_node(
        node=tpu_v2.Node(name=name, network_config=tpu_v2.NetworkConfig(
            enable_external_ips=True)), update_mask=mask).result(timeout=30, polling=POLL)
    try:
        ext = wait_until(lambda: net.node("int").network_endpoints[1].access_config.external_ip,
                         bool)
        assert wait_until(lambda: _try(ext, net), lambda out: out == "1")
        # the flat mode: one address per worker, reachable from anywhere
        assert _admin(net.endpoint, "POST", "faults", {"network": "flat"})[0] == 200
        ep = net.node("int").network_endpoints[1]
        assert ep.access_config.external_ip == ep.ip_address
        assert ssh(ep.ip_address, net.port, net.key, "echo $TPU_WORKER_ID").strip() == "1"
        with pytest.raises((asyncssh.Error, OSError, asyncio.TimeoutError)):
            ssh(ext, net.port, net.key, "true", timeout=1)  # no external listener any more
    finally:
        _admin(net.endpoint, "POST", "faults", {"network": "cloud"})
        net.client.update_node(
            node=tpu_v2.Node(name=name, network_config=tpu_v2.NetworkConfig(
                enable_external_ips=False)), update_mask=mask).result(timeout=30, polling=POLL)
    assert not net.node("int").network_endpoints[1].access_config.external_ip


def _try(host: str, net: Net) -> str:
    try:
        return ssh(host, net.port, net.key, "echo $TPU_WORKER_ID", timeout=2).strip()
    except (asyncssh.Error, OSError, asyncio.TimeoutError):
        return ""


# ------------------------------------------------------------------ bastion


def _bastion(net: Net, **body: Any) -> tuple[int, Any]:
    pub = net.key.export_public_key("openssh").decode().strip()
    return _admin(net.endpoint, "POST", "bastion", {"authorizedKeys": [pub], **body})


def test_a_bastion_forwards_only_into_its_vpc(net: Net) -> None:
    status, b = _bastion(net)
    assert status == 200 and b["port"] == net.port and b["host"] != b["internalIp"]
    try:
        target = net.node("int").network_endpoints[0].ip_address
        r = openssh(net, "-J", f"anyone@{b['host']}:{b['port']}", target, "echo $TPU_WORKER_ID")
        assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr
        assert ssh(target, net.port, net.key, "hostname -I >/dev/null; echo ok",
                   tunnel=(b["host"], b["port"])).strip() == "ok"
        # no shell on it, no forwarding outside the VPC (the API, an external address)
        assert openssh(net, "-p", str(b["port"]), b["host"], "true").returncode == 255
        api_port = net.endpoint.rsplit(":", 1)[1]
        ext = net.node("ext").network_endpoints[0].access_config.external_ip
        for host, port in (("127.0.0.1", api_port), (ext, net.port)):
            r = openssh(net, "-J", f"x@{b['host']}:{b['port']}", "-p", str(port), host, "true")
            assert r.returncode == 255 and "stdio forwarding failed" in r.stderr, (host, r.stderr)
        # a bastion on another network reaches none of these nodes; a stranger's key nothing
        status, b = _bastion(net, network="projects/net/global/networks/isolated")
        assert status == 200 and b["network"] == "projects/net/global/networks/isolated"
        r = openssh(net, "-J", f"x@{b['host']}:{b['port']}", target, "true")
        assert r.returncode == 255 and "stdio forwarding failed" in r.stderr, r.stderr
        other = net.node("other").network_endpoints[0].ip_address
        r = openssh(net, "-J", f"x@{b['host']}:{b['port']}", other, "echo in")
        assert r.returncode == 0 and r.stdout.strip() == "in", r.stderr
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            ssh(b["host"], b["port"], stranger, "true")
    finally:
        assert _admin(net.endpoint, "DELETE", "bastion")[0] == 200
    assert _admin(net.endpoint, "GET", "bastion")[0] == 404
    status, err = _admin(net.endpoint, "POST", "bastion", {"authorizedKeys": ["nonsense"]})
    assert status == 400 and "public key" in err["error"]["message"]


# ------------------------------------------------------------------ IAP


def _hostname(net: Net, node_id: str, worker: int) -> str:
    attrs = net.client.get_guest_attributes(
        request={"name": f"{PARENT}/nodes/{node_id}"}).guest_attributes
    return next(i.value for i in attrs[worker].query_value.items if i.key == "hostname")


def test_the_iap_stand_in_reaches_an_internal_only_worker_as_gcloud_would(
        net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    from tpuctl.emulator.iap import install

    bin_dir = net.tmp / "bin"
    install(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", net.endpoint)
    monkeypatch.setenv("TPUCTL_API_TOKEN_FILE", str(net.tmp / "state" / "token"))
    instance = _hostname(net, "int", 1)
    assert instance.startswith("t1v-n-") and instance.endswith("-w-1")
    target = net.node("int").network_endpoints[1].ip_address
    proxy = (f"ProxyCommand gcloud compute start-iap-tunnel {instance} %p --listen-on-stdin "
             "--project=net --zone=local-a --verbosity=warning")
    r = openssh(net, "-o", proxy, "-o", "ProxyUseFdpass=no", target, "echo $TPU_WORKER_ID")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    # asyncssh runs the same command as its proxy
    cmd = ["gcloud", "compute", "start-iap-tunnel", instance, str(net.port),
           "--listen-on-stdin", "--project=net", "--zone=local-a"]

    async def through_iap() -> str:
        async with asyncssh.connect(target, net.port, username=USER, client_keys=[net.key],
                                    known_hosts=None, proxy_command=cmd) as conn:
            return str((await conn.run("echo $TPU_WORKER_ID", check=True)).stdout)

    assert asyncio.run(through_iap()).strip() == "1"
    # an instance IAP cannot find: gcloud's error, exit 1
    r = subprocess.run(["gcloud", "compute", "start-iap-tunnel", "t1v-n-nope-w-0", "22",
                        "--listen-on-stdin", "--project=net", "--zone=local-a"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 1 and "4047" in r.stderr and "start-iap-tunnel" in r.stderr
