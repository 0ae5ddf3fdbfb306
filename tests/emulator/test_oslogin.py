"""OS Login, project metadata and the guest agent's delay.

The OS Login and Compute responses are checked against their discovery documents; logins go
to real workers over SSH: with `enable-oslogin=TRUE` (node or project metadata; the node's
wins) only keys imported for the signed-in account work, under its POSIX username, and
`ssh-keys` metadata is ignored; a key change works only after the (seeded) guest-agent
delay, and until then the previous keys hold."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import googleapiclient
import pytest
from google.cloud import tpu_v2
from google.protobuf import field_mask_pb2

from tests.conftest import tpu_client, wait_until
from tests.emulator.conftest import TOKEN
from tests.emulator.test_api_schema import check
from tests.emulator.test_faults import _admin
from tests.emulator.test_network import POLL
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.guestagent import GuestAgents
from tpuctl.emulator.oslogin import fingerprint, posix_username
from tpuctl.emulator.server import run_in_thread

DOCS = Path(googleapiclient.__file__).parent / "discovery_cache/documents"
OSLOGIN = json.loads((DOCS / "oslogin.v1.json").read_text())["schemas"]
COMPUTE = json.loads((DOCS / "compute.v1.json").read_text())["schemas"]
PARENT = "projects/osl/locations/local-a"
ACCOUNT = "Alice.Smith@Example.com"
POSIX = "alice_smith_example_com"


def call(endpoint: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}/{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # loopback
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def new_key() -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key, key.export_public_key("openssh").decode().strip()


class Osl:
    def __init__(self, endpoint: str, tmp: Path) -> None:
        self.endpoint = endpoint
        self.client = tpu_client(endpoint, TOKEN)
        self.tmp = tmp

    def create(self, node_id: str, metadata: dict[str, str]) -> str:
        """A node with external IPs; the one this machine can reach (its worker's external
        IP: the network is cloud-true)."""
        node = self.client.create_node(
            parent=PARENT, node_id=node_id,
            node=tpu_v2.Node(accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
                             metadata=metadata,
                             network_config=tpu_v2.NetworkConfig(enable_external_ips=True)),
        ).result(timeout=30, polling=POLL)
        return str(node.network_endpoints[0].access_config.external_ip)

    def internal(self, node_id: str) -> str:
        """Worker 0's internal IP (what a jump host forwards to)."""
        node = self.client.get_node(name=f"{PARENT}/nodes/{node_id}")
        return str(node.network_endpoints[0].ip_address)

    def set_metadata(self, node_id: str, metadata: dict[str, str]) -> None:
        self.client.update_node(
            node=tpu_v2.Node(name=f"{PARENT}/nodes/{node_id}", metadata=metadata),
            update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
        ).result(timeout=30, polling=POLL)

    def import_key(self, public: str, **extra: Any) -> dict[str, Any]:
        status, body = call(self.endpoint, "POST",
                            f"v1/users/{ACCOUNT}:importSshPublicKey?projectId=osl",
                            {"key": public, **extra})
        assert status == 200, body
        return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def osl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Osl]:
    tmp = tmp_path_factory.mktemp("osl")
    # keys at once unless a test sets the guest-agent delay (as the one about it does)
    with run_in_thread(tmp / "state", create_delay=0.02, token=TOKEN,
                       faults={"account": ACCOUNT, "guest-agent-delay": 0}) as endpoint:
        yield Osl(endpoint, tmp)


def login(ip: str, port: int, user: str, key: asyncssh.SSHKey, cmd: str = "true") -> str:
    async def go() -> str:
        async with asyncssh.connect(ip, port, username=user, client_keys=[key],
                                    known_hosts=None, connect_timeout=5) as conn:
            return str((await conn.run(cmd, check=True)).stdout)

    return asyncio.run(go())


def can_login(ip: str, port: int, user: str, key: asyncssh.SSHKey) -> bool:
    try:
        login(ip, port, user, key)
        return True
    except asyncssh.PermissionDenied:
        return False


def ssh_port(osl: Osl) -> int:
    return int(_admin(osl.endpoint, "GET", "status")[1]["ssh_port"])


def test_login_profile_import_and_delete_follow_the_discovery_document(osl: Osl) -> None:
    _, public = new_key()
    body = osl.import_key(public, expirationTimeUsec="4102444800000000")
    check(body, OSLOGIN["ImportSshPublicKeyResponse"], "import", schemas=OSLOGIN)
    profile = body["loginProfile"]
    fp = fingerprint(public)
    assert profile["posixAccounts"][0]["username"] == POSIX == posix_username(ACCOUNT)
    assert profile["posixAccounts"][0]["accountId"] == "osl"
    assert profile["sshPublicKeys"][fp]["key"] == public
    assert profile["sshPublicKeys"][fp]["expirationTimeUsec"] == "4102444800000000"
    status, got = call(osl.endpoint, "GET", f"v1/users/{ACCOUNT}/loginProfile")
    assert status == 200 and fp in got["sshPublicKeys"]
    check(got, OSLOGIN["LoginProfile"], "profile", schemas=OSLOGIN)
    status, ints = call(osl.endpoint, "GET",
                        f"v1/users/{ACCOUNT}/loginProfile?%24alt=json%3Benum-encoding%3Dint")
    assert ints["posixAccounts"][0]["operatingSystemType"] == 1  # LINUX, as a number
    status, one = call(osl.endpoint, "GET", f"v1/users/{ACCOUNT}/sshPublicKeys/{fp}")
    assert status == 200 and one["name"] == f"users/{ACCOUNT.lower()}/sshPublicKeys/{fp}"
    assert call(osl.endpoint, "DELETE", f"v1/users/{ACCOUNT}/sshPublicKeys/{fp}") == (200, {})
    assert call(osl.endpoint, "DELETE", f"v1/users/{ACCOUNT}/sshPublicKeys/{fp}")[0] == 404
    # another account's profile is not the caller's
    status, err = call(osl.endpoint, "GET", "v1/users/bob@example.com/loginProfile")
    assert status == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    for bad in ("ssh-ed25519 not-base64!", "ssh-dss AAAAB3Nza", ""):
        status, err = call(osl.endpoint, "POST", f"v1/users/{ACCOUNT}:importSshPublicKey",
                           {"key": bad})
        assert status == 400 and "SSH public key" in err["error"]["message"], bad


def test_project_metadata_as_compute_serves_it(osl: Osl) -> None:
    status, project = call(osl.endpoint, "GET", "compute/v1/projects/meta-proj")
    assert status == 200 and "items" not in project["commonInstanceMetadata"]
    check(project, COMPUTE["Project"], "project", schemas=COMPUTE)
    status, _ = call(osl.endpoint, "POST", "emulator/v1/projects/meta-proj/metadata",
                     {"enable-oslogin": "TRUE", "other": "x"})
    assert status == 200
    _, project = call(osl.endpoint, "GET", "compute/v1/projects/meta-proj")
    check(project, COMPUTE["Project"], "project", schemas=COMPUTE)
    assert {i["key"]: i["value"] for i in project["commonInstanceMetadata"]["items"]} == {
        "enable-oslogin": "TRUE", "other": "x"}
    status, err = call(osl.endpoint, "POST", "emulator/v1/projects/meta-proj/metadata",
                       {"bad key!": "x"})
    assert status == 400 and "bad key!" in err["error"]["message"]
    call(osl.endpoint, "POST", "emulator/v1/projects/meta-proj/metadata",
         {"enable-oslogin": None, "other": None})
    assert "items" not in call(osl.endpoint, "GET",
                               "compute/v1/projects/meta-proj")[1]["commonInstanceMetadata"]


def test_oslogin_nodes_take_only_imported_keys_under_the_posix_username(osl: Osl) -> None:
    key, public = new_key()
    port = ssh_port(osl)
    ip = osl.create("osl-node", {"enable-oslogin": "TRUE", "ssh-keys": f"alice:{public}"})
    assert not can_login(ip, port, "alice", key)  # ssh-keys metadata is ignored
    fp = fingerprint(public)
    osl.import_key(public)
    try:
        out = login(ip, port, POSIX, key, 'echo "$(whoami) $USER $HOME"').split()
        assert out[:2] == [POSIX, POSIX] and out[2].endswith(f"/users/{POSIX}")
        assert not can_login(ip, port, "alice", key)
        # project-wide OS Login, and a node that says FALSE wins over its project
        call(osl.endpoint, "POST", "emulator/v1/projects/osl/metadata",
             {"enable-oslogin": "TRUE"})
        plain = osl.create("plain-node", {"ssh-keys": f"alice:{public}"})
        assert can_login(plain, port, POSIX, key) and not can_login(plain, port, "alice", key)
        optout = osl.create("optout-node", {"enable-oslogin": "FALSE",
                                            "ssh-keys": f"alice:{public}"})
        assert can_login(optout, port, "alice", key)
        assert not can_login(optout, port, POSIX, key)
    finally:
        call(osl.endpoint, "POST", "emulator/v1/projects/osl/metadata",
             {"enable-oslogin": None})
        call(osl.endpoint, "DELETE", f"v1/users/{ACCOUNT}/sshPublicKeys/{fp}")
    assert can_login(plain, port, "alice", key)  # metadata keys again without OS Login
    assert not can_login(ip, port, POSIX, key)  # the key was deleted
    # an expired key never works
    osl.import_key(public, expirationTimeUsec="1000000")
    assert not can_login(ip, port, POSIX, key)
    call(osl.endpoint, "DELETE", f"v1/users/{ACCOUNT}/sshPublicKeys/{fp}")


def test_project_ssh_keys_count_unless_the_node_blocks_them(osl: Osl) -> None:
    key, public = new_key()
    port = ssh_port(osl)
    call(osl.endpoint, "POST", "emulator/v1/projects/osl/metadata",
         {"ssh-keys": f"carol:{public} carol"})
    try:
        open_ip = osl.create("proj-keys", {})
        blocked = osl.create("proj-keys-blocked", {"block-project-ssh-keys": "TRUE"})
        assert can_login(open_ip, port, "carol", key)
        assert not can_login(blocked, port, "carol", key)
    finally:
        call(osl.endpoint, "POST", "emulator/v1/projects/osl/metadata", {"ssh-keys": None})


def test_a_new_key_works_only_after_the_guest_agent_delay(osl: Osl) -> None:
    key, public = new_key()
    old, old_public = new_key()
    port = ssh_port(osl)
    ip = osl.create("delayed", {"ssh-keys": f"dave:{old_public}"})
    assert can_login(ip, port, "dave", old)
    _admin(osl.endpoint, "POST", "faults", {"guest-agent-delay": 1.5})
    try:
        osl.set_metadata("delayed", {"ssh-keys": f"dave:{public}"})
        # at once: "Permission denied (publickey)" for the new key, the old one still works
        assert not can_login(ip, port, "dave", key)
        assert can_login(ip, port, "dave", old)
        wait_until(lambda: can_login(ip, port, "dave", key), bool, timeout=5)
        assert not can_login(ip, port, "dave", old)
    finally:
        _admin(osl.endpoint, "POST", "faults", {"guest-agent-delay": 0})


def test_guest_agent_lags_are_seeded_and_bounded_by_the_delay() -> None:
    now = [1000.0]

    def agents(seed: int) -> GuestAgents:
        faults = Faults({"guest-agent-delay": 4}, seed=seed)
        return GuestAgents(faults, clock=lambda: now[0])

    def lags(seed: int) -> list[float]:
        a = agents(seed)
        a.boot("n", (False, frozenset({("u", "ssh-ed25519 A", 0)})))
        for i in range(5):
            a.change("n", (False, frozenset({("u", f"ssh-ed25519 K{i}", 0)})))
        return [v.lag for v in a._versions["n"]]

    assert lags(3) == lags(3) != lags(4)
    assert all(0.5 <= lag <= 1.0 for lag in lags(3) + lags(4))
    a = agents(5)
    a.boot("n", (False, frozenset({("u", "ssh-ed25519 A", 0)})))
    lag = a._versions["n"][0].lag
    assert a.authorized("n", "u") == []  # a fresh boot: not yet
    now[0] += lag * 4
    assert a.authorized("n", "u") == ["ssh-ed25519 A"]
    a.boot("fresh-after-restart", (False, frozenset({("u", "ssh-ed25519 B", 0)})),
           applied=True)
    assert a.authorized("fresh-after-restart", "u") == ["ssh-ed25519 B"]


def test_profiles_project_metadata_and_the_bastion_survive_a_restart(tmp_path: Path) -> None:
    key, public = new_key()
    with run_in_thread(tmp_path, create_delay=0.02, token=TOKEN,
                       faults={"account": ACCOUNT, "guest-agent-delay": 0}) as endpoint:
        osl = Osl(endpoint, tmp_path)
        osl.import_key(public)
        call(endpoint, "POST", "emulator/v1/projects/osl/metadata", {"enable-oslogin": "TRUE"})
        ip = osl.create("kept", {})
        status, bastion = _admin(endpoint, "POST", "bastion", {"authorizedKeys": [public]})
        assert status == 200
        assert can_login(ip, ssh_port(osl), POSIX, key)
    with run_in_thread(tmp_path, create_delay=0.02, token=TOKEN,
                       faults={"account": ACCOUNT}) as endpoint:
        osl = Osl(endpoint, tmp_path)
        profile = call(endpoint, "GET", f"v1/users/{ACCOUNT}/loginProfile")[1]
        assert fingerprint(public) in profile["sshPublicKeys"]
        items = call(endpoint, "GET", "compute/v1/projects/osl")[1]["commonInstanceMetadata"]
        assert items["items"] == [{"key": "enable-oslogin", "value": "TRUE"}]
        assert _admin(endpoint, "GET", "bastion")[1] == bastion  # same address, same host key
        # a node READY before the restart has its accounts already, whatever the delay
        _admin(endpoint, "POST", "faults", {"guest-agent-delay": 30})
        assert can_login(ip, ssh_port(osl), POSIX, key)
        assert asyncio.run(_through(bastion, osl.internal("kept"), key)).strip() == POSIX
        status, _ = _admin(endpoint, "DELETE", "bastion")
        assert status == 200


async def _through(bastion: dict[str, Any], ip: str, key: asyncssh.SSHKey) -> str:
    opts: dict[str, Any] = dict(client_keys=[key], known_hosts=None, connect_timeout=5)
    async with asyncssh.connect(bastion["host"], bastion["port"], username="me",
                                **opts) as jump, \
            jump.connect_ssh(ip, bastion["port"], username=POSIX, **opts) as conn:
        return str((await conn.run("whoami", check=True)).stdout)
