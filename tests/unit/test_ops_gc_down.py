"""`gc`'s selection and `down`'s order of things, on fake ports."""

from __future__ import annotations

import time

import pytest

from tests.fakes import fake_ports
from tpuctl.errors import Declined, UsageError
from tpuctl.ops import gc as gc_op
from tpuctl.ops.down import DownEvents, DownRequest, down
from tpuctl.ops.launch import LaunchSpec, launch
from tpuctl.ops.session import on_slice


def _past(seconds: int) -> dict[str, str]:
    return {"tpuctl-expires": str(int(time.time()) - seconds)}


@pytest.fixture
def leaked():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("mine-preempted", state="PREEMPTED")
    cloud.add_node("mine-terminated", state="TERMINATED")
    cloud.add_node("mine-expired", labels=_past(600))
    cloud.add_node("mine-fresh", labels={"tpuctl-expires": str(int(time.time()) + 600)})
    cloud.add_node("mine-ready")
    cloud.add_node("bobs-preempted", state="PREEMPTED", owner="bob")
    cloud.add_node("ownerless-preempted", state="PREEMPTED", owner=None)
    cloud.add_node("unmanaged-preempted", state="PREEMPTED", managed=False)
    cloud.add_node("via-queue", state="PREEMPTED",
                   queued_resource="projects/proj/locations/zone-a/queuedResources/via-queue")
    return ports, cloud


def test_gc_takes_your_leaked_nodes_and_names_the_others(leaked):
    ports, cloud = leaked
    found, others = gc_op.candidates(cloud)
    assert {c.node.name: c.reason for c in found} == {
        "mine-preempted": "preempted", "mine-terminated": "terminated",
        "mine-expired": "expired 10 min ago (--ttl)", "via-queue": "preempted"}
    assert [c.node.name for c in others] == ["bobs-preempted", "ownerless-preempted"]


def test_any_owner_takes_the_others_too_but_never_an_unmanaged_node(leaked):
    ports, cloud = leaked
    found, others = gc_op.candidates(cloud, any_owner=True)
    names = {c.node.name for c in found}
    assert {"bobs-preempted", "ownerless-preempted"} <= names and others == []
    assert "unmanaged-preempted" not in names and "mine-ready" not in names


def test_gc_deletes_through_a_queued_resource_when_one_owns_the_node(leaked):
    ports, cloud = leaked
    result = gc_op.gc(ports, gc_op.GcRequest(yes=True))
    assert sorted(result.deleted) == ["mine-expired", "mine-preempted", "mine-terminated",
                                      "via-queue"]
    assert "delete_queued_resource zone-a via-queue" in cloud.changes()
    left = {n.name for n in cloud.list_nodes()}
    assert left == {"mine-fresh", "mine-ready", "bobs-preempted", "ownerless-preempted",
                    "unmanaged-preempted"}


def test_gc_off_a_terminal_needs_yes_and_a_no_deletes_nothing(leaked):
    ports, cloud = leaked
    with pytest.raises(UsageError, match="without --yes"):
        gc_op.gc(ports, gc_op.GcRequest())
    with pytest.raises(Declined):
        gc_op.gc(ports, gc_op.GcRequest(can_ask=True))  # the default answer: no
    assert cloud.changes() == []


def test_gc_with_nothing_to_collect_needs_no_yes():
    ports, cloud, _ = fake_ports()
    cloud.add_node("fine")
    assert gc_op.gc(ports, gc_op.GcRequest()).deleted == ()


# -- down ---------------------------------------------------------------------------------------
def _run_on(ports, name: str) -> None:
    on_slice(ports, name, lambda s: launch(s, LaunchSpec(command="sleep 1", env={},
                                                         workdir=".", run_id="r1")))


def test_down_stops_the_latest_run_then_deletes():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", accelerator="v6e-8")
    _run_on(ports, "n1")
    result = down(ports, DownRequest("n1", yes=True))
    assert result.stopped is not None and result.stopped.workers[0].result == "terminated"
    assert fleet.scripts()[-1] == "stop" and cloud.changes()[-1] == "delete_node zone-a n1"
    assert result.stop_skipped is None and cloud.list_nodes() == []


@pytest.mark.parametrize("state", ["CREATING", "STOPPED"])
def test_down_of_a_node_that_cannot_run_anything_just_deletes_it(state):
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", state=state)
    result = down(ports, DownRequest("n1", yes=True))
    assert result.stopped is None and result.stop_skipped is None
    assert fleet.script_calls == [] and cloud.list_nodes() == []


def test_down_without_a_run_deletes_quietly():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", accelerator="v6e-8")
    result = down(ports, DownRequest("n1", yes=True))
    assert result.stop_skipped is None and cloud.list_nodes() == []


def test_down_of_a_preempted_node_says_why_nothing_was_stopped():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", state="PREEMPTED")
    result = down(ports, DownRequest("n1", yes=True))
    assert "PREEMPTED" in (result.stop_skipped or "") and cloud.list_nodes() == []


@pytest.mark.parametrize("kw", [{"managed": False}, {"owner": "bob"}])
def test_down_refuses_what_is_not_yours_before_touching_anything(kw):
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", **kw)
    with pytest.raises(UsageError):
        down(ports, DownRequest("n1", yes=True))
    assert fleet.script_calls == [] and cloud.changes() == []


def test_down_asks_before_anything_and_a_no_changes_nothing():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", accelerator="v6e-8")
    _run_on(ports, "n1")
    calls = len(fleet.script_calls)
    asked = []

    class No(DownEvents):
        def confirm(self, sl):
            asked.append(sl.name)
            return False

    with pytest.raises(Declined):
        down(ports, DownRequest("n1", can_ask=True), No())
    assert asked == ["n1"] and len(fleet.script_calls) == calls and len(cloud.list_nodes()) == 1
    with pytest.raises(UsageError, match="without --yes"):
        down(ports, DownRequest("n1"))
