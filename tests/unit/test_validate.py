"""Values from the API and from workers are checked before they reach an argv, a config file
or a local path (tpuctl/validate.py, the GCP adapter, ssh and ssh-config)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl import validate
from tpuctl.errors import CloudError, ExitCode
from tpuctl.model import Slice, Worker

HOSTILE = ["-oProxyCommand=touch /tmp/pwned", "a b", "127.0.0.1\nProxyCommand touch x",
           "", "localhost", "127.0.0.1 -p 1", "--", "1.2.3.4/32", "[::1]"]
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.mark.parametrize("bad", HOSTILE)
def test_addresses_must_be_ip_addresses(bad):
    with pytest.raises(ValueError, match="not an IP address"):
        validate.ip_address(bad)


@given(st.text(max_size=40))
def test_an_accepted_address_is_a_canonical_ip(text):
    try:
        out = validate.ip_address(text)
    except ValueError:
        return
    assert out == str(ipaddress.ip_address(out)) and not out.startswith("-")
    assert not any(c.isspace() for c in out)


@pytest.mark.parametrize("bad", ["0", "65536", "-1", "22 ", "+22", "2\n2", "２２", "", "x"])
def test_ports_are_integers_in_range(bad):
    with pytest.raises(ValueError, match="1-65535"):
        validate.port(bad)
    assert validate.port("22") == 22 and validate.port(65535) == 65535


def test_host_keys_must_be_ed25519_keys():
    assert validate.host_key(ED25519) == f"ssh-ed25519 {ED25519}"
    assert validate.host_key(f"ssh-ed25519 {ED25519} host-comment") == f"ssh-ed25519 {ED25519}"
    for bad in ["", "AAAA", f"ssh-rsa {ED25519}", ED25519[:-4], ED25519 + "\nProxyCommand x",
                "AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="]:
        with pytest.raises(ValueError, match="not an ssh-ed25519 public key"):
            validate.host_key(bad)


def test_paths_built_from_worker_data_stay_under_their_base(tmp_path):
    assert validate.inside(tmp_path, "node", "run-1") == tmp_path.resolve() / "node" / "run-1"
    for parts in (("..", "x"), ("node", "../../x"), ("/etc",)):
        with pytest.raises(ValueError, match="leads outside"):
            validate.inside(tmp_path, *parts)
    (tmp_path / "node").symlink_to("/tmp")
    with pytest.raises(ValueError, match="leads outside"):
        validate.inside(tmp_path, "node", "run-1")


@given(st.text(max_size=30))
def test_run_ids_are_one_plain_path_component(text):
    try:
        rid = validate.run_id(text)
    except ValueError:
        return
    assert os.sep not in rid and rid not in (".", "..") and not rid.startswith("-")


def _node(ip: str = "10.0.0.2", name: str = "projects/p/locations/us-east5-b/nodes/n",
          **kw):
    from google.cloud import tpu_v2

    return tpu_v2.Node(name=name, accelerator_type=kw.pop("accelerator_type", "v6e-8"),
                       runtime_version="v2-alpha-tpuv6e", state=tpu_v2.Node.State.READY,
                       network_endpoints=[tpu_v2.NetworkEndpoint(ip_address=ip)], **kw)


@pytest.mark.parametrize("field,value", [
    ("ip", v) for v in HOSTILE if v] + [("external_ip", v) for v in HOSTILE if v] + [
    ("hostname", "t1v-n-1-w-0 -oProxyCommand=x"), ("hostname", "--help"),
    ("name", "projects/p/locations/z/nodes/a b"),
    ("name", "projects/p\nx/locations/z/nodes/n"),
    ("accelerator_type", "v6e-8\nProxyCommand x"),
    ("labels", {"tpuctl-owner": "me\x1b[2J"}),
    ("port", "22 -oProxyCommand=x"),
    ("host_key", "AAAA\nProxyCommand x"),
])
def test_the_gcp_adapter_refuses_hostile_node_data_with_exit_4(field, value):
    from tpuctl.cloud.base import GuestAttribute
    from tpuctl.cloud.gcp import node_to_slice

    guest = [GuestAttribute(0, "hostkeys", "ssh-ed25519", ED25519),
             GuestAttribute(0, "tpuctl-emulator", "ssh-port", "2222")]
    kw = {}
    if field == "ip":
        node = _node(ip=value)
    elif field == "external_ip":
        from google.cloud import tpu_v2

        node = _node()
        node.network_endpoints[0].access_config = tpu_v2.AccessConfig(external_ip=value)
    elif field == "hostname":
        guest = [*guest, GuestAttribute(0, "tpu", "hostname", value)]
        node = _node()
    elif field == "port":
        node, guest = _node(), [GuestAttribute(0, "tpuctl-emulator", "ssh-port", value)]
    elif field == "host_key":
        node, guest = _node(), [GuestAttribute(0, "hostkeys", "ssh-ed25519", value)]
    else:
        kw[field] = value
        node = _node(**kw)
    with pytest.raises(CloudError) as info:
        node_to_slice(node, guest)
    assert info.value.exit_code == ExitCode.CLOUD
    assert "invalid value" in info.value.message


def test_the_gcp_adapter_keeps_good_node_data():
    from tpuctl.cloud.base import GuestAttribute
    from tpuctl.cloud.gcp import node_to_slice

    sl = node_to_slice(_node(), [GuestAttribute(0, "hostkeys", "ssh-ed25519", ED25519),
                                 GuestAttribute(0, "tpuctl-emulator", "ssh-port", "2222")])
    assert sl.workers == (Worker(0, "10.0.0.2", 2222, f"ssh-ed25519 {ED25519}"),)
    assert (sl.project, sl.zone, sl.name) == ("p", "us-east5-b", "n")


def test_the_gcp_adapter_reads_external_ips_and_instance_names():
    from google.cloud import tpu_v2

    from tpuctl.cloud.base import GuestAttribute
    from tpuctl.cloud.gcp import node_to_slice

    node = _node()
    node.network_endpoints[0].access_config = tpu_v2.AccessConfig(external_ip="34.1.2.3")
    node.network_endpoints.append(tpu_v2.NetworkEndpoint(ip_address=""))  # not registered
    sl = node_to_slice(node, [GuestAttribute(0, "some-namespace", "hostname", "t1v-n-ab-w-0")])
    assert sl.workers == (Worker(0, "10.0.0.2", 22, None, external_ip="34.1.2.3",
                                 hostname="t1v-n-ab-w-0"),)


def test_ssh_config_writes_only_validated_values(tmp_path):
    from tpuctl.ops.route import SshRoute, ssh_targets
    from tpuctl.ops.ssh import render_ssh_config

    def config(sl: Slice, key: Path = tmp_path / "k", user: str = "al") -> str:
        return render_ssh_config(sl, ssh_targets(sl, user, SshRoute(internal_ip=True)), key,
                                 tmp_path / "kh")

    good = Slice(name="job", project="p", zone="z", accelerator_type="v6e-8",
                 runtime_version="r", state="READY", workers=(Worker(0, "10.0.0.2", 22),))
    assert "HostName 10.0.0.2" in config(good)
    for w in (Worker(0, "-oProxyCommand=x", 22), Worker(0, "10.0.0.2\nProxyCommand x", 22),
              Worker(0, "10.0.0.2", 0)):
        bad = Slice(name="job", project="p", zone="z", accelerator_type="v6e-8",
                    runtime_version="r", state="READY", workers=(w,))
        with pytest.raises(ValueError):
            config(bad)
    with pytest.raises(Exception, match="cannot be written"):
        config(good, key=Path('/tmp/a"\nProxyCommand x'))
    with pytest.raises(Exception, match="invalid user name"):
        config(good, user="al\nProxyCommand x")
