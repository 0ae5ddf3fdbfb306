"""`cost`, `list` idle flags and `gc --idle` on in-memory fakes: what the ledger records as
the operations run, and what the commands make of it."""

from __future__ import annotations

import time

import pytest

from tests.fakes import fake_ports
from tpuctl.errors import UsageError
from tpuctl.ops.cost import CostRequest, cost
from tpuctl.ops.create import CreateRequest, create
from tpuctl.ops.gc import GcRequest, gc
from tpuctl.ops.launch import LaunchRequest, launch_node
from tpuctl.ops.nodes import DeleteRequest, delete_node, list_nodes
from tpuctl.ops.runs import TailRequest, tail_node


def test_the_operations_write_the_ledger_and_cost_adds_it_up() -> None:
    ports, cloud, fleet = fake_ports()
    create(ports, CreateRequest("a", "v6e-8"))
    create(ports, CreateRequest("b", "v6e-8", spot=True))
    launch_node(ports, LaunchRequest("a", command=("python", "x.py"), run_id="ra"))
    tail_node(ports, TailRequest("a", follow=True), lambda i, line: None)
    launch_node(ports, LaunchRequest("b", command=("python", "x.py"), run_id="rb"))
    cloud.set_state("b", "PREEMPTED")  # while rb ran
    delete_node(ports, DeleteRequest("a", yes=True))
    assert gc(ports, GcRequest(yes=True)).deleted == ("b",)
    kinds = [(e.kind, e.node, e.run) for e in ports.ledger.read()]
    assert kinds == [("create", "a", ""), ("create", "b", ""), ("run_start", "a", "ra"),
                     ("run_end", "a", "ra"), ("run_start", "b", "rb"), ("delete", "a", ""),
                     ("preempted", "b", "")]
    report = cost(ports, CostRequest())
    by = {r.key: r for r in report.rows}
    assert set(by) == {"a", "b"}
    assert by["a"].running_s > 0 and by["a"].idle_s > 0 and by["a"].lost_s == 0
    assert by["b"].running_s == 0 and by["b"].lost_s > 0  # rb's time on a preempted node
    assert not by["a"].up and not by["b"].up
    doc = report.to_dict()
    rows, totals = doc["rows"], doc["totals"]
    assert isinstance(rows, list) and isinstance(totals, dict)
    for key in ("running_s", "idle_s", "lost_s", "running_cost", "idle_cost", "lost_cost",
                "total_cost"):  # as printed: seconds to the ms, money to 1e-6
        assert sum(r[key] for r in rows) == pytest.approx(totals[key], abs=0.005)
    for r in rows:
        assert r["running_s"] + r["idle_s"] + r["lost_s"] == pytest.approx(r["total_s"],
                                                                          abs=1e-3)
    # zone-a has no price: the time is there, the money is not guessed
    assert report.totals.unpriced_s == pytest.approx(report.totals.total_s)
    assert any("no price" in n for n in report.notes)


def test_cost_reads_a_live_nodes_runs_from_its_workers() -> None:
    ports, cloud, fleet = fake_ports()
    cloud.world.clock = lambda: time.time() - 120
    cloud.add_node("live", keyed=True)
    fleet.worker("live", 0).runs["elsewhere"] = {"id": "elsewhere", "exit": None,
                                                 "started": time.time() - 60}
    report = cost(ports, CostRequest())
    (row,) = report.rows
    assert row.up and row.running_s > 0
    starts = [e for e in ports.ledger.read() if e.kind == "run_start"]
    assert [e.run for e in starts] == ["elsewhere"]  # learnt, for after the node is gone


def test_bad_cost_options_are_refused_before_any_call() -> None:
    ports, cloud, _ = fake_ports()
    with pytest.raises(UsageError, match="--by"):
        cost(ports, CostRequest(by="week"))
    with pytest.raises(UsageError, match="duration"):
        cost(ports, CostRequest(since="yesterday"))
    assert cloud.calls == []


def test_list_flags_nodes_idle_past_the_threshold() -> None:
    ports, cloud, fleet = fake_ports()
    cloud.world.clock = lambda: time.time() - 3600  # made an hour ago
    cloud.add_node("idle", keyed=True)
    cloud.add_node("busy", keyed=True)
    cloud.add_node("theirs", owner="bob", keyed=True)
    fleet.worker("busy", 0).runs["r"] = {"id": "r", "exit": None, "started": time.time() - 5}
    listed = list_nodes(ports)
    assert listed.idle["idle"].state == "idle" and listed.idle["busy"].state == "busy"
    assert "theirs" not in listed.idle  # another owner's business
    assert listed.flagged == ["idle"]
    doc = {d["name"]: d for d in listed.to_dict()}
    assert doc["idle"]["idle"]["flagged"] is True and doc["busy"]["idle"]["flagged"] is False
    assert doc["idle"]["price_per_hour"]["amount"] is None  # zone-a: no price
    assert doc["idle"]["age_s"] == pytest.approx(3600, abs=60)


def test_gc_idle_deletes_only_your_idle_managed_nodes() -> None:
    ports, cloud, fleet = fake_ports()
    cloud.world.clock = lambda: time.time() - 3 * 3600
    for name in ("idle", "idle2", "busy", "young"):
        cloud.add_node(name, accelerator="v4-16", keyed=True)
    cloud.add_node("theirs", owner="bob", keyed=True)
    cloud.add_node("unmanaged", managed=False, keyed=True)
    cloud.world.clock = time.time
    cloud.add_node("young", accelerator="v4-16", keyed=True)  # made just now
    fleet.worker("busy", 1).runs["r"] = {"id": "r", "exit": None, "started": time.time() - 9}
    fleet.worker("idle", 0).runs["old"] = {"id": "old", "exit": 0,
                                           "started": time.time() - 3 * 3600,
                                           "ended": time.time() - 2.5 * 3600}
    result = gc(ports, GcRequest(yes=True, idle="2h"))
    assert result.deleted == ("idle", "idle2")
    assert {c.node.name: c.reason.split(":")[0] for c in result.kept} == {"busy": "busy"}
    fleet.unreachable = {1}
    cloud.world.clock = lambda: time.time() - 3 * 3600
    cloud.add_node("idle", accelerator="v4-16", keyed=True)
    result = gc(ports, GcRequest(yes=True, idle="2h"))
    assert result.deleted == ()  # a worker that does not answer keeps its node
    assert {c.node.name for c in result.kept} == {"idle", "busy"}
    assert {n.name for n in cloud.list_nodes()} >= {"theirs", "unmanaged", "young", "busy"}


def test_gc_idle_checks_its_value_before_any_call() -> None:
    ports, cloud, _ = fake_ports()
    with pytest.raises(UsageError, match="invalid duration"):
        gc(ports, GcRequest(yes=True, idle="soon"))
    assert cloud.calls == []


def test_idle_warn_comes_from_tpuctl_yaml(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tpuctl.config import idle_warn_setting
    from tpuctl.errors import ConfigError

    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    assert idle_warn_setting() == (1800.0, "default")
    ports, cloud, _ = fake_ports()
    cloud.world.clock = lambda: time.time() - 3600  # made an hour ago, never ran anything
    cloud.add_node("idle", keyed=True)
    assert list_nodes(ports).flagged == ["idle"]
    (tmp_path / "tpuctl.yaml").write_text("idle_warn: 2h\n")
    seconds, source = idle_warn_setting()
    assert seconds == 7200 and "tpuctl.yaml" in source
    listed = list_nodes(ports)
    assert listed.flagged == [] and listed.idle["idle"].state == "idle"  # idle, not yet long
    (tmp_path / "tpuctl.yaml").write_text("idle_warn: a while\n")
    with pytest.raises(ConfigError, match="idle_warn 'a while'") as bad:
        list_nodes(ports)
    assert bad.value.exit_code == 2


def test_describe_and_create_carry_the_price(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tpuctl.ops.nodes import describe

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "tpuctl").mkdir()
    (tmp_path / "tpuctl" / "prices.yaml").write_text(
        "source: ours\nprices:\n  v6e:\n    zone: {on_demand: 2.0, spot: 0.5}\n")
    ports, cloud, _ = fake_ports()
    made = create(ports, CreateRequest("a", "v6e-8", spot=True))
    assert made.to_dict()["price_per_hour"]["amount"] == 4.0  # 8 chips × 0.5 spot
    detail = describe(ports, "a", now=time.time() + 1800)
    doc = detail.to_dict()
    assert doc["name"] == "a" and doc["price_per_hour"]["source"] == "ours"
    assert doc["cost_so_far"] == pytest.approx(2.0, abs=0.05)  # half an hour at $4/h
    events = [(e.kind, e.price, e.price_source) for e in ports.ledger.read()]
    assert events == [("create", 4.0, "ours")]
