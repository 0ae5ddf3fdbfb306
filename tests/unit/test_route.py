"""How each worker is reached (tpuctl/ops/route.py): the address, the way in, the proxy
command's placeholders, and the refusal before any connection when there is no way in."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import CloudError, ConfigError, ExitCode, UsageError
from tpuctl.model import Slice, Worker
from tpuctl.ops.route import (
    SshRoute,
    check_template,
    fill,
    parse_jump,
    resolve_route,
    ssh_targets,
)
from tpuctl.workers.openssh import proxy_command_line, ssh_option_args


def _slice(external: bool = True, hostname: bool = True) -> Slice:
    return Slice(name="job", project="proj", zone="us-east5-b", accelerator_type="v6e-16",
                 runtime_version="r", state="READY",
                 workers=tuple(Worker(i, f"10.0.0.{i + 2}", 2222, f"ssh-ed25519 K{i}",
                                      external_ip=f"34.0.0.{i + 2}" if external else None,
                                      hostname=f"t1v-n-ab-w-{i}" if hostname else None)
                               for i in range(4)))


def test_external_ips_by_default_internal_ones_inside_the_vpc():
    targets = ssh_targets(_slice(), "alice", SshRoute())
    assert [(t.host, t.port, t.username) for t in targets[:2]] == [
        ("34.0.0.2", 2222, "alice"), ("34.0.0.3", 2222, "alice")]
    assert all(t.jump is None and t.proxy_command == () for t in targets)
    inside = ssh_targets(_slice(), "alice", SshRoute(internal_ip=True), [3])
    assert [(t.index, t.host) for t in inside] == [(3, "10.0.0.5")]


def test_no_external_ip_and_no_way_in_is_refused_naming_the_ways_in():
    with pytest.raises(ConfigError) as e:
        ssh_targets(_slice(external=False), "alice", SshRoute(), [1, 2])
    assert e.value.exit_code == ExitCode.USAGE
    assert "'job' has no external IP on w1, w2" in e.value.message
    hint = e.value.hint or ""
    assert all(way in hint for way in ("--internal-ip", "--ssh-proxy-jump",
                                       "--tunnel-through-iap"))


def test_a_jump_host_reaches_internal_ips():
    targets = ssh_targets(_slice(external=False), "alice", SshRoute(proxy_jump="bob@jump:22"))
    assert [(t.host, t.jump) for t in targets[:1]] == [("10.0.0.2", "bob@jump:22")]
    args = ssh_option_args(targets[0], __import__("pathlib").Path("/k"),
                           __import__("pathlib").Path("/kh"))
    assert args[args.index("-J") + 1] == "bob@jump:22"


def test_iap_runs_gcloud_s_tunnel_with_the_instance_name():
    route = SshRoute(iap=True, gcloud="/opt/gcloud/bin/gcloud")
    (t,) = ssh_targets(_slice(external=False), "alice", route, [1])
    assert t.host == "10.0.0.3"
    assert t.proxy_command == ("/opt/gcloud/bin/gcloud", "compute", "start-iap-tunnel",
                               "t1v-n-ab-w-1", "2222", "--listen-on-stdin",
                               "--project=proj", "--zone=us-east5-b", "--verbosity=warning")
    with pytest.raises(CloudError, match="publishes no instance name"):
        ssh_targets(_slice(hostname=False), "alice", route)


def test_a_proxy_command_s_placeholders_are_filled_per_worker():
    route = SshRoute(proxy_command="ssh -W {host}:{port} -l {{me}} gw # {node}/w{worker} "
                     "{zone} {project} {instance}")
    (t,) = ssh_targets(_slice(), "alice", route, [2])
    assert t.proxy_command == ("ssh", "-W", "10.0.0.4:2222", "-l", "{me}", "gw", "#",
                               "job/w2", "us-east5-b", "proj", "t1v-n-ab-w-2")
    line = proxy_command_line(("nc", "%h", "a b"))
    assert line == "nc %%h 'a b'"


@pytest.mark.parametrize("template,why", [
    ("", "empty"), ("nc {host} {user}", "unknown placeholder '{user}'"),
    ("nc {host", "unknown placeholder '{'"), ("nc 'unclosed", "No closing quotation"),
    ("nc\n{host}", "control characters"),
])
def test_bad_templates_are_refused(template, why):
    with pytest.raises(UsageError, match=why):
        check_template(template)


@pytest.mark.parametrize("bad", ["", "@host", "a b@host", "alice@", "alice@host:0",
                                 "alice@host:99999", "-oProxyCommand=x", "alice@-host"])
def test_bad_jump_hosts_are_refused(bad):
    with pytest.raises(UsageError, match="invalid --ssh-proxy-jump"):
        parse_jump(bad)


@pytest.mark.parametrize("good", ["host", "alice@host", "alice@bastion.example.com:2222",
                                  "a_b@10.1.2.3:22", "alice@[::1]:22"])
def test_good_jump_hosts(good):
    assert parse_jump(good) == good


def test_ways_in_cannot_be_combined_and_iap_needs_gcloud(monkeypatch):
    with pytest.raises(UsageError, match="cannot be combined"):
        resolve_route(proxy_jump="a@b", iap=True)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError, match="needs gcloud, which is not on PATH") as e:
        resolve_route(iap=True)
    assert e.value.exit_code == ExitCode.USAGE


def test_flags_replace_the_file_s_block():
    block = {"proxy_jump": "alice@bastion", "internal_ip": False}
    assert resolve_route(file=block, file_source="tpuctl.yaml (x)").proxy_jump == \
        "alice@bastion"
    from_flags = resolve_route(internal_ip=True, file=block)
    assert from_flags.internal_ip and from_flags.proxy_jump is None
    assert from_flags.source == "flags"


@given(st.text(min_size=1, max_size=40))
def test_a_value_never_leaves_its_word(value):
    """Whatever a placeholder's value (validated or not), the template keeps its words."""
    words = check_template("nc -q0 {host} {port}")
    try:
        filled = fill(words, {"host": value, "port": "22"})
    except KeyError:
        return
    assert filled[:2] == ("nc", "-q0") and filled[2] == value and len(filled) == 4
    if value.isprintable():
        assert shlex.split(proxy_command_line(filled).replace("%%", "%")) == list(filled)


@pytest.mark.parametrize("address", ["-e/bin/sh", "10.0.0.2 -x", "a'b", "100%"])
def test_a_hostile_address_never_reaches_a_proxy_command(address):
    sl = Slice(name="job", project="p", zone="z", accelerator_type="v6e-8",
               runtime_version="r", state="READY", workers=(Worker(0, address, 22),))
    with pytest.raises(CloudError, match="refusing"):
        ssh_targets(sl, "alice", SshRoute(proxy_command="nc {host} {port}"))
