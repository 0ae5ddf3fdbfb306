"""Multislice groups on the fakes: one queued resource of N nodes NAME-i, NAME standing for
all of them (workers slice by slice, global indices), launch's MEGASCALE_* and global JAX
variables, one slice preempted = the group preempted, and the request body as the API
names it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from tests.fakes import fake_ports
from tpuctl.cloud.bodies import node_spec_target
from tpuctl.cloud.groups import GroupCloud, global_index, worker_label
from tpuctl.errors import UsageError
from tpuctl.model import NodeSpec
from tpuctl.ops.access import ensure_access
from tpuctl.ops.create import CreateRequest, create
from tpuctl.ops.launch import LaunchSpec, launch
from tpuctl.ops.nodes import start_delete
from tpuctl.ops.session import open_session
from tpuctl.vmoptions import VmOptions, parse_data_disk


def group_ports():
    ports, cloud, fleet = fake_ports()
    return dataclasses.replace(ports, cloud=GroupCloud(cloud)), cloud, fleet


def test_create_slices_makes_one_queued_resource_and_the_name_stands_for_the_group():
    ports, cloud, _ = group_ports()
    result = create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2))
    assert cloud.changes()[0] == "create_queued_resource zone-a ms"
    assert {n for (_, n) in cloud.world.nodes} == {"ms-0", "ms-1"}
    sl = result.slice
    assert (sl.name, sl.slices, sl.state, len(sl.workers)) == ("ms", 2, "READY", 8)
    assert [w.index for w in sl.workers] == list(range(8))
    assert sl.workers[4].ip == cloud.get_node("ms-1").workers[0].ip  # slice 1, worker 0
    # our key went to both slices
    assert all("ssh-keys" in cloud.get_node(n).metadata for n in ("ms-0", "ms-1"))
    again = create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2))
    assert not again.created
    with pytest.raises(UsageError, match=r"2 slice\(s\) \(asked 3\)"):
        create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=3))


def test_launch_sets_megascale_and_global_jax_variables_on_every_worker():
    ports, _, fleet = group_ports()
    create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2))

    async def go():
        session = open_session(ports, "ms")
        try:
            return await launch(session, LaunchSpec(command="true", workdir=".", env={},
                                                    run_id="r1"))
        finally:
            await session.close()

    result = asyncio.run(go())
    assert result.workers == 8
    envs = sorted(fleet.launched_env, key=lambda e: int(e["JAX_PROCESS_ID"]))
    coord = envs[0]["MEGASCALE_COORDINATOR_ADDRESS"]
    for g, env in enumerate(envs):
        assert env["JAX_PROCESS_ID"] == str(g) and env["JAX_NUM_PROCESSES"] == "8"
        assert env["MEGASCALE_SLICE_ID"] == str(g // 4) and env["MEGASCALE_NUM_SLICES"] == "2"
        assert env["MEGASCALE_COORDINATOR_ADDRESS"] == coord and coord.endswith(":8080")
        assert env["MEGASCALE_PORT"] == "8080"
        assert env["JAX_COORDINATOR_ADDRESS"] == envs[0]["JAX_COORDINATOR_ADDRESS"]
    assert coord.split(":")[0] == envs[0]["JAX_COORDINATOR_ADDRESS"].split(":")[0]


def test_one_slice_preempted_is_the_group_preempted_and_delete_takes_the_queued_resource():
    ports, cloud, _ = group_ports()
    create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2))
    cloud.set_state("ms-1", "PREEMPTED")
    sl = ports.cloud.get_node("ms")
    assert sl.state == "PREEMPTED"
    start_delete(ports, sl)
    assert cloud.changes()[-1] == "delete_queued_resource zone-a ms"
    assert cloud.world.nodes == {}


def test_a_node_called_name_0_is_not_a_group():
    ports, cloud, _ = group_ports()
    cloud.add_node("solo-0")
    with pytest.raises(Exception, match="not found"):
        ensure_access(ports, "solo")


@pytest.mark.parametrize(("kw", "named"), [
    ({"slices": 0}, "invalid --slices 0"),
    ({"slices": 300}, "invalid --slices 300"),
    ({"slices": 2, "vm": VmOptions(data_disks=(parse_data_disk("source=d"),))},
     "v6e-8 x 2 slices has 2 hosts"),
])
def test_bad_slices_are_refused_before_any_call(kw, named):
    ports, cloud, _ = group_ports()
    with pytest.raises(UsageError, match=named):
        create(ports, CreateRequest(name="ms", accelerator_type="v6e-8", **kw))
    assert cloud.calls == []


def test_the_node_spec_names_multislice_params_instead_of_a_node_id():
    spec = NodeSpec(name="ms", accelerator_type="v6e-16", runtime_version="v2-alpha-tpuv6e")
    assert node_spec_target(spec) == {"nodeId": "ms"}
    assert node_spec_target(dataclasses.replace(spec, slices=4)) == {
        "multisliceParams": {"nodeCount": 4, "nodeIdPrefix": "ms"}}


def test_worker_labels_and_indices_name_slice_and_worker():
    ports, _, _ = group_ports()
    sl = create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2)).slice
    assert [worker_label(sl, i) for i in (0, 3, 4, 7)] == ["s0w0", "s0w3", "s1w0", "s1w3"]
    assert global_index(sl, 1, 3) == 7
    assert worker_label(dataclasses.replace(sl, slices=1), 7) == "w7"


def test_one_slice_preempted_while_following_is_exit_6_and_recreate_rebuilds_the_group(
        tmp_path, monkeypatch):
    from tests.unit.test_ops_up import _git
    from tpuctl.errors import PreemptedError
    from tpuctl.ops.prepared import prepare_file
    from tpuctl.ops.up import UpOptions, UpRequest, up, up_recipe

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "proj"
    root.mkdir()
    (root / "ms.yaml").write_text("name: ms\naccelerator: v6e-16\nslices: 2\n"
                                  "command: [python, t.py]\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first")

    def preempting(times: int):
        left = [times]

        def on_follow(node, i, args, payload):
            if left[0] <= 0:
                return None
            if i == 7:
                left[0] -= 1
            cloud.set_state("ms-1", "PREEMPTED")  # slice 1 only
            return None, "", []  # its workers' connections are lost
        return on_follow

    ports, cloud, fleet = group_ports()
    fleet.on_follow = preempting(1)
    with pytest.raises(PreemptedError, match="preempted"):
        up_recipe(ports, UpRequest(root / "ms.yaml"))
    ports, cloud, fleet = group_ports()
    fleet.on_follow = preempting(1)
    result = up(ports, prepare_file(root / "ms.yaml"),
                UpOptions(on_preempt="recreate", max_recreates=1, log_dir=tmp_path / "logs"))
    assert result.exit_code == 0
    assert cloud.changes() == ["create_queued_resource zone-a ms",
                               "delete_queued_resource zone-a ms",
                               "create_queued_resource zone-a ms"]
    assert len(fleet.launched_env) == 16  # 8 workers, twice


def test_access_to_a_group_adds_our_key_to_every_slice_keeping_their_own_metadata():
    ports, cloud, _ = group_ports()
    qr = "projects/proj/locations/zone-a/queuedResources/ms"
    for i in range(3):
        cloud.add_node(f"ms-{i}", queued_resource=qr)
        cloud.world.nodes[("zone-a", f"ms-{i}")] = dataclasses.replace(
            cloud.get_node(f"ms-{i}"), metadata={"team": f"t{i}"} if i < 2 else {
                "team": "t2", "ssh-keys": "bob:ssh-ed25519 BBBB bob"})
    sl = ensure_access(ports, "ms").slice
    assert (sl.slices, len(sl.workers)) == (3, 12)
    assert cloud.changes() == [f"set_metadata zone-a ms-{i}" for i in range(3)]
    for i in range(3):
        md = cloud.get_node(f"ms-{i}").metadata
        assert md["team"] == f"t{i}" and "alice:ssh-ed25519" in md["ssh-keys"]
    assert cloud.get_node("ms-2").metadata["ssh-keys"].startswith("bob:")  # kept


def test_a_groups_price_is_every_slices():
    from tests.fakes import FakeCloud
    from tpuctl.prices import price_for

    ports, _, _ = fake_ports(FakeCloud(zone="us-east5-b"))
    ports = dataclasses.replace(ports, cloud=GroupCloud(ports.cloud))
    one = price_for("v6e-16", "us-east5-b", False)
    assert one.amount is not None
    got = create(ports, CreateRequest(name="ms", accelerator_type="v6e-16", slices=2)).price
    assert got is not None and got.chips == 2 * one.chips
    assert got.amount == pytest.approx(2 * one.amount)
