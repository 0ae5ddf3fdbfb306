"""`top`, prices, `gc --idle` and `cost` through the real CLI on the emulator (issue 17).

One user with a HOME of their own (so the cost ledger holds only this module's nodes) and a
price file for the emulator's region; two nodes made here: `spend-a` (v6e-16, 4 workers)
trains a CPU burner under `top`, loses worker 2 for a while, then runs a long job and is
preempted; `spend-b` (v4-8) runs a short job and sits idle until `gc --idle` takes it. The
tests run in order and share the nodes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, tpu_client, wait_until

pytestmark = pytest.mark.e2e

A, B, FOREIGN = "spend-a", "spend-b", "spend-u"
PRICES = """source: e2e prices
prices:
  v6e:
    local: {on_demand: 2.5, spot: 1.0}
  v4:
    "*": {on_demand: 3.0}
"""
# burns until the test has seen it burning (or 90 s): a fixed few seconds can pass before a
# loaded machine draws one frame of `top` on every worker
BURN = ("echo burning; end=$((SECONDS+90)); "
        "while [ $SECONDS -lt $end ] && [ ! -e ~/.burn-done ]; do :; done; echo burnt")


@pytest.fixture(scope="module")
def me(emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("spender")
    prices = home / ".config" / "tpuctl" / "prices.yaml"
    prices.parent.mkdir(parents=True)
    prices.write_text(PRICES)
    cli = Cli(home=home, endpoint=emulator.endpoint, token_file=emulator.token_file)
    yield cli
    cli("emulator", "faults", "--clear")
    for name in (A, B):
        cli("delete", name, "--yes")


def _json(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(r.stdout)


def _top(me: Cli) -> dict[str, Any]:
    r = me("top", A, "--once", "--json")
    assert r.returncode in (0, 255), r.stderr
    return _json(r)


def _burning(frame: dict[str, Any]) -> bool:
    return all(w["state"] == "running" and (w["run_cpu_pct"] or 0) > 0
               and w["tpu"]["source"] == "libtpu"
               and all(c["duty_pct"] > 0 for c in w["tpu"]["chips"])
               for w in frame["workers"])


def test_create_prices_the_node_and_top_follows_the_runs_real_cpu(me: Cli) -> None:
    r = me("create", A, "--type", "v6e-16", "--json")
    assert r.returncode == 0, r.stderr
    price = _json(r)["price_per_hour"]
    assert (price["amount"], price["currency"], price["source"]) == (40.0, "USD",
                                                                     "e2e prices")
    listed = {n["name"]: n for n in _json(me("list", "--json"))}
    assert listed[A]["price_per_hour"]["amount"] == 40.0 and listed[A]["age_s"] >= 0
    r = me("launch", A, "--", "bash", "-c", BURN)
    assert r.returncode == 0, r.stderr
    frame = wait_until(lambda: _top(me), _burning, timeout=30)
    assert len(frame["workers"]) == 4 and frame["exit_code"] == 0
    for w in frame["workers"]:
        assert len(w["tpu"]["chips"]) == 4  # v6e-16: 4 chips a worker
        assert all(c["hbm_total"] == 32 * 2**30 and c["hbm_used"] > 0
                   for c in w["tpu"]["chips"])
        assert w["host_cpu_pct"] > 0 and w["last_line"] in ("burning", "burnt")
    assert me("exec", A, "--", "bash", "-c", "touch ~/.burn-done").returncode == 0
    r = me("tail", A, "--follow")
    assert r.returncode == 0, r.stderr
    after = _top(me)  # the run is over: its CPU and the chips' metrics are gone
    assert {w["state"] for w in after["workers"]} == {"exited"}
    assert all(w["run_cpu_pct"] is None and w["tpu"]["source"] == "none"
               and w["tpu"]["chips"] == [] and w["tpu"]["reason"] for w in after["workers"])


def test_top_marks_an_unreachable_worker_and_keeps_going(me: Cli) -> None:
    r = me("emulator", "faults", f"unreachable-workers={A}:2")
    assert r.returncode == 0, r.stderr
    try:
        r = me("top", A, "--once", "--json")
        assert r.returncode == 255 and "w2 unreachable" in r.stderr
        frame = _json(r)
        assert frame["unreachable_workers"] == [2]
        assert [w["state"] for w in frame["workers"]] == ["exited", "exited", "unreachable",
                                                          "exited"]
        live = subprocess.Popen([sys.executable, "-m", "tpuctl", "top", A, "--interval",
                                 "0.5", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=me.env(), cwd=me.home,
                                stdin=subprocess.DEVNULL)
        assert live.stdout is not None
        frames = [json.loads(live.stdout.readline()) for _ in range(3)]
        live.send_signal(signal.SIGINT)  # how a person leaves top
        assert live.wait(30) == 0, live.stderr.read() if live.stderr else ""
        assert [f["frame"] for f in frames] == [0, 1, 2]
        assert all(f["unreachable_workers"] == [2] for f in frames)
        assert all(w["state"] == "exited" for f in frames for w in f["workers"]
                   if w["worker"] != 2)
    finally:
        me("emulator", "faults", "--clear")


def test_gc_idle_takes_only_an_idle_node_of_yours(me: Cli, emulator) -> None:
    from google.cloud import tpu_v2

    assert me("create", B, "--type", "v4-8").returncode == 0
    assert me("launch", B, "--", "bash", "-c", "sleep 1; echo done").returncode == 0
    assert me("tail", B, "--follow").returncode == 0
    r = me("launch", A, "--", "sleep", "300")  # busy
    assert r.returncode == 0, r.stderr
    client = tpu_client(emulator.endpoint, emulator.state_dir)
    client.create_node(request={  # a node tpuctl does not manage, idle as can be
        "parent": "projects/local-project/locations/local-a", "node_id": FOREIGN,
        "node": tpu_v2.Node(accelerator_type="v4-8", runtime_version="tpu-ubuntu2204-base")}
    ).result(timeout=30)
    try:
        # B's run ended a moment ago: idle for more than 1s soon
        wait_until(lambda: {n["name"]: n for n in _json(me("list", "--json"))},
                   lambda ns: ns[B]["idle"]["idle_s"] > 1.5, timeout=20)
        r = me("gc", "--idle", "1s", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        assert [c["name"] for c in _json(r)["candidates"]] == [B]
        r = me("gc", "--idle", "1s", "--yes", "--json")
        assert r.returncode == 0, r.stderr
        doc = _json(r)
        assert doc["deleted"] == [B]
        assert {c["name"]: c["reason"].split(":")[0] for c in doc["kept"]} == {A: "busy"}
        names = {n["name"] for n in _json(me("list", "--all", "--json"))}
        assert A in names and FOREIGN in names and B not in names
    finally:
        client.delete_node(name=f"projects/local-project/locations/local-a/nodes/{FOREIGN}"
                           ).result(timeout=30)


def test_cost_splits_each_tasks_life_and_adds_up(me: Cli, emulator) -> None:
    emulator.admin("POST", f"projects/local-project/locations/local-a/nodes/{A}:preempt")
    r = me("gc", "--yes", "--json")  # the preempted node: recorded, then deleted
    assert r.returncode == 0 and _json(r)["deleted"] == [A], r.stderr
    r = me("cost", "--json")
    assert r.returncode == 0, r.stderr
    doc = _json(r)
    rows = {row["task"]: row for row in doc["rows"]}
    assert set(rows) == {A, B} and doc["currency"] == "USD"
    a, b = rows[A], rows[B]
    assert b["running_s"] >= 1 and b["idle_s"] > 1 and b["lost_s"] == 0
    # A was preempted: the time its runs were live is lost (the burner and the sleep)
    assert a["running_s"] == 0 and a["lost_s"] > 6 and a["idle_s"] > 0
    assert not a["up"] and not b["up"]
    for row in (a, b):
        assert row["total_s"] == pytest.approx(row["running_s"] + row["idle_s"]
                                               + row["lost_s"], abs=0.01)
        assert row["total_cost"] == pytest.approx(
            (40.0 if row is a else 12.0) * row["total_s"] / 3600, rel=1e-3)
    for key in ("running_s", "idle_s", "lost_s", "running_cost", "idle_cost", "lost_cost",
                "total_cost"):
        assert a[key] + b[key] == pytest.approx(doc["totals"][key], abs=0.005)
    by_day = _json(me("cost", "--json", "--by", "day"))
    assert by_day["totals"]["total_cost"] == pytest.approx(doc["totals"]["total_cost"],
                                                           rel=1e-3)
    ledger = Path(me.home) / ".tpuctl" / "ledger.jsonl"
    assert oct(ledger.stat().st_mode & 0o777) == "0o600"
