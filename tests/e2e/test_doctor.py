"""`tpuctl doctor` through the real CLI on the emulator (cloud network, guest-agent delay as by
default): each fault it must detect named with its worker and check, and a partial slice
reported by doctor and refused by `launch`. One 2-worker node (v4-16) serves the module."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Cli, Emulator

pytestmark = pytest.mark.e2e

NODE = "doctor-e2e"


@pytest.fixture(scope="module")
def node(cli: Cli) -> Iterator[str]:
    r = cli("create", NODE, "--type", "v4-16")
    assert r.returncode == 0, r.stderr
    yield NODE
    cli("delete", NODE, "--yes")


def doctor(cli: Cli, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    r = cli("doctor", NODE, "--json", "--port-timeout", "0.5", *args)
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode, (doc, r.stderr)
    return r, doc


def problems(doc: dict[str, Any]) -> set[tuple[int | None, str]]:
    return {(p["worker"], p["check"]) for p in doc["problems"]}


def test_doctor_names_each_fault_by_worker_and_check(cli: Cli, node: str,
                                                     emulator: Emulator) -> None:
    r, doc = doctor(cli)
    assert r.returncode == 0 and doc["healthy"], doc["problems"]
    assert [w["worker"] for w in doc["workers"]] == [0, 1]
    emulator.set_faults(full_disk=f"{node}:1", held_tpu=f"{node}:0", stale_lockfile=f"{node}:1",
           blocked_ports=f"{node}:8476")
    try:
        r, doc = doctor(cli)
        text = cli("doctor", node, "--port-timeout", "0.5")
    finally:
        emulator.set_faults(full_disk=None, held_tpu=None, stale_lockfile=None, blocked_ports=None)
    assert r.returncode == 1
    assert problems(doc) == {(0, "tpu"), (1, "disk-home"), (1, "disk-tmp"), (0, "port"),
                             (1, "port")}
    tpu = next(p for p in doc["problems"] if p["check"] == "tpu")
    assert tpu["holders"] == "1" and "cmd=" in tpu["detail"] and "tpuctl stop" in tpu["fix"]
    w1 = {c["check"]: c for c in doc["workers"][1]["checks"]}
    assert w1["lockfile"]["status"] == "warn" and "stale" in w1["lockfile"]["detail"]
    assert w1["port"]["result"] == "filtered"
    # the text form: the matrix, then each failure named with its fix
    assert text.returncode == 1
    assert "FAIL w1 disk-home" in text.stderr and "fix: free space" in text.stderr
    assert "FAIL w0 tpu" in text.stderr


def test_a_partial_slice_is_reported_and_launch_refuses_it(cli: Cli, node: str,
                                                           emulator: Emulator) -> None:
    emulator.set_faults(missing_workers=f"{node}:1")
    try:
        r, doc = doctor(cli)
        assert r.returncode == 1 and problems(doc) == {(None, "workers")}
        assert "missing: w1" in doc["problems"][0]["detail"]
        assert [w["worker"] for w in doc["workers"]] == [0]  # the registered one is checked
        # as on a node that came up partial: no complete worker list cached from before
        for entry in (cli.home / ".tpuctl" / "cache" / "workers").glob(f"{node}.*.json"):
            entry.unlink()
        launch = cli("launch", node, "--", "true", env=cli.env(TPUCTL_WORKER_WAIT="1"))
        assert launch.returncode == 4, launch.stderr
        assert "1 of 2 workers registered" in launch.stderr and "w1" in launch.stderr
        # a host that never registered: listed by the API, its TPU metadata blank
        emulator.set_faults(missing_workers=f"{node}:1:blank")
        r, doc = doctor(cli)
        assert problems(doc) == {(1, "metadata")}, doc["problems"]
    finally:
        emulator.set_faults(missing_workers=None)
    r, doc = doctor(cli)
    assert r.returncode == 0, doc["problems"]


def test_the_runs_own_coordinator_port_is_checked_not_only_8476(cli: Cli, node: str,
                                                                 emulator: Emulator) -> None:
    """The field failure: a firewall that opens 8476 but drops the port JAX really uses."""
    from tpuctl.ops.launch import coordinator_port

    done, refused = "doctor-port-a", "doctor-port-b"
    r = cli("launch", node, "--run-id", done, "--", "true")
    assert r.returncode == 0, r.stderr
    ports = coordinator_port(done), coordinator_port(refused)
    assert 8476 not in ports
    emulator.set_faults(blocked_ports=",".join(f"{node}:{p}" for p in ports))
    try:
        r = cli("launch", node, "--run-id", refused, "--", "true")
        assert r.returncode == 1, r.stderr
        assert "not launching" in r.stderr and "20000-39999" in r.stderr
        for w in ("w0", "w1"):
            assert f"{w} port: no answer from " in r.stderr
        assert r.stderr.count(f":{ports[1]} within") == 2, r.stderr
        # doctor without --port: 8476 passes, the latest run's port is named on both workers
        _, doc = doctor(cli)
        assert problems(doc) == {(0, "run-port"), (1, "run-port")}, doc["problems"]
        assert {p["port"] for p in doc["problems"]} == {str(ports[0])}
        assert all(p["run"] == done for p in doc["problems"])
    finally:
        emulator.set_faults(blocked_ports=None)
    listing = cli("exec", node, "--", "ls", ".tpuctl/runs")
    assert listing.returncode == 0, listing.stderr
    assert done in listing.stdout and refused not in listing.stdout  # nothing launched
