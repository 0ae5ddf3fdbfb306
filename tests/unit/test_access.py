"""Access to a node's workers on fake ports: which login (ssh-keys metadata or OS Login, and
why), a fresh key retried while the guest agent applies it, and no partial slice."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from tests.fakes import fake_ports
from tpuctl.errors import NodeNotReady
from tpuctl.ops.access import ensure_access, login_mode
from tpuctl.ops.create import CreateRequest, create
from tpuctl.ops.remote_exec import ExecRequest, exec_command


def test_metadata_login_adds_our_key_once():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1")
    access = ensure_access(ports, "n1")
    assert (access.login.user, access.login.mode) == ("alice", "metadata")
    assert "no enable-oslogin" in access.login.why
    assert cloud.get_node("n1").metadata["ssh-keys"] == "alice:ssh-ed25519 AAAAfake tpuctl"
    assert access.login.keys_changed_at > time.time() - 5  # it changed the node just now
    again = ensure_access(ports, "n1")
    assert cloud.changes() == ["set_metadata zone-a n1"]
    assert again.login.keys_changed_at == access.login.keys_changed_at  # remembered


@pytest.mark.parametrize(("node", "project", "oslogin", "why"), [
    ({}, {"enable-oslogin": "TRUE"}, True, "in project proj's metadata"),
    ({"enable-oslogin": "true"}, {}, True, "in the node's metadata"),
    ({"enable-oslogin": "FALSE"}, {"enable-oslogin": "TRUE"}, False, "in the node's metadata"),
    ({}, {"enable-oslogin": "no"}, False, "enable-oslogin=no in project"),
])
def test_the_node_s_enable_oslogin_wins_over_the_project_s(node, project, oslogin, why):
    ports, cloud, _ = fake_ports()
    cloud.world.project_metadata = project
    got, reason = login_mode(cloud, node)
    assert got is oslogin and why in reason


def test_os_login_imports_our_key_logs_in_as_the_posix_user_and_leaves_ssh_keys_alone():
    ports, cloud, fleet = fake_ports()
    cloud.world.project_metadata = {"enable-oslogin": "TRUE"}
    created = create(ports, CreateRequest(name="n1", accelerator_type="v6e-16"))
    assert "ssh-keys" not in cloud.get_node("n1").metadata
    assert cloud.changes() == ["create_node zone-a n1", "oslogin_import alice@example.com"]
    access = ensure_access(ports, "n1")
    assert (access.login.user, access.login.mode) == ("alice_example_com", "oslogin")
    assert created.slice.name == "n1"
    assert cloud.changes() == ["create_node zone-a n1", "oslogin_import alice@example.com"]
    result = exec_command(ports, ExecRequest("n1", ("true",)))
    assert result.exit_code == 0


def test_a_refused_fresh_key_is_retried_until_it_applies_and_said_once():
    ports, cloud, fleet = fake_ports()
    notices: list[str] = []
    ports = dataclasses.replace(ports, notice=notices.append)
    create(ports, CreateRequest(name="n1", accelerator_type="v6e-16"))
    fleet.deny = {1: 3, 2: 1}  # the guest agent is still applying the key there
    result = exec_command(ports, ExecRequest("n1", ("echo", "hi")))
    assert result.exit_code == 0 and fleet.denied == 4
    assert len(notices) == 1 and "w1, w2 refused it" in notices[0]
    assert re.search(r"waiting up to \d+s for the workers. guest agent", notices[0])


def test_a_refused_key_is_an_error_when_tpuctl_changed_nothing_recently():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", metadata={"ssh-keys": "alice:ssh-ed25519 AAAAfake tpuctl"})
    notices: list[str] = []
    ports = dataclasses.replace(ports, notice=notices.append)
    fleet.deny = {0: 1}
    result = exec_command(ports, ExecRequest("n1", ("true",)))
    assert result.exit_code == 255 and "permission denied (publickey)" in \
        (result.results[0].error or "")
    assert notices == [] and fleet.denied == 1


def test_the_key_wait_is_bounded(monkeypatch):
    import tpuctl.ops.access as access_mod

    monkeypatch.setattr(access_mod, "KEY_WAIT_S", 0.5)
    ports, cloud, fleet = fake_ports()
    ports = dataclasses.replace(ports, notice=lambda line: None)
    create(ports, CreateRequest(name="n1", accelerator_type="v6e-16"))
    fleet.deny = {3: 10_000}
    t0 = time.monotonic()
    result = exec_command(ports, ExecRequest("n1", ("true",)))
    assert time.monotonic() - t0 < 3
    assert result.exit_code == 255 and [r.index for r in result.results if not r.ok] == [3]


def test_a_partial_slice_is_waited_for_then_refused_naming_the_missing_workers():
    ports, cloud, fleet = fake_ports()
    ports = dataclasses.replace(ports, worker_wait=0.3)
    cloud.add_node("n1", metadata={"ssh-keys": "alice:ssh-ed25519 AAAAfake tpuctl"})
    cloud.world.missing["n1"] = 2
    with pytest.raises(NodeNotReady, match=r"2 of 4 workers registered .*missing: w2, w3"):
        exec_command(ports, ExecRequest("n1", ("true",)))
    assert fleet.script_calls == []
    cloud.world.missing["n1"] = 4
    with pytest.raises(NodeNotReady, match="reports no workers"):
        ensure_access(ports, "n1")
    assert ensure_access(ports, "n1", partial=True).slice.workers == ()


def test_workers_that_register_late_are_waited_for(monkeypatch):
    ports, cloud, _ = fake_ports()
    ports = dataclasses.replace(ports, worker_wait=10)
    cloud.add_node("n1", metadata={"ssh-keys": "alice:ssh-ed25519 AAAAfake tpuctl"})
    cloud.world.missing["n1"] = 1
    real_get = cloud.get_node
    polls = []

    def get_node(name: str):
        polls.append(name)
        if len(polls) == 3:
            cloud.world.missing.pop("n1")  # it registers now
        return real_get(name)

    monkeypatch.setattr(cloud, "get_node", get_node)
    assert len(ensure_access(ports, "n1").slice.workers) == 4
