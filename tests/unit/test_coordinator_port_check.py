"""Which coordinator port is checked between workers: `launch`'s preflight tries the run's
own (JAX_COORDINATOR_ADDRESS: derived from the run id, or serving's --dist-init-addr port),
never doctor's 8476, and refuses a run whose port a firewall drops; `doctor NAME` tries 8476
and each worker's latest run's port unless `--port` names one."""

from __future__ import annotations

import pytest

from tests.fakes import fake_ports, healthy_doctor
from tpuctl.errors import RemoteCommandError
from tpuctl.ops.doctor import DoctorRequest, run_doctor
from tpuctl.ops.doctor_checks import Check
from tpuctl.ops.launch import LaunchRequest, LaunchSpec, coordinator_port, launch, launch_node
from tpuctl.ops.preflight import port_target
from tpuctl.ops.session import on_slice


def _doctor_args(fleet) -> set[tuple[str, ...]]:
    return {a for _, _, s, a in fleet.script_calls if s == "doctor"}


def test_port_target_is_the_runs_coordinator_except_on_a_lone_host():
    ports, cloud, _ = fake_ports()
    multi = cloud.add_node("n1")
    lone = cloud.add_node("n2", accelerator="v6e-8")
    assert port_target(multi, "10.0.0.2:23456") == "10.0.0.2:23456"
    assert port_target(lone, "10.0.0.2:23456") == "-"
    assert port_target(multi, None) == "-"


def test_launch_checks_the_port_derived_from_its_run_id_not_8476():
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1")
    launch_node(ports, LaunchRequest("n1", command=("true",), run_id="r1"))
    port = coordinator_port("r1")
    assert port != 8476
    assert _doctor_args(fleet) == {("-", f"{sl.workers[0].ip}:{port}", "1")}


def test_a_serving_launch_checks_its_dist_init_port():
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1")
    spec = LaunchSpec(command="true", env={}, workdir=".", run_id="s1",
                      coordinator_port=31234)
    on_slice(ports, "n1", lambda s: launch(s, spec))
    assert _doctor_args(fleet) == {("-", f"{sl.workers[0].ip}:31234", "1")}


def test_launch_refuses_when_the_runs_port_is_dropped_naming_port_and_workers():
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1")
    target = f"{sl.workers[0].ip}:{coordinator_port('r1')}"
    for i in (1, 3):
        lines = healthy_doctor(i, ["-", target])
        lines[-1] = (f"check=port status=fail addr={sl.workers[0].ip} "
                     f"port={coordinator_port('r1')} result=filtered detail=no answer from "
                     f"{target} within 1s: a firewall drops it")
        fleet.doctor_lines[i] = lines
    with pytest.raises(RemoteCommandError) as e:
        launch_node(ports, LaunchRequest("n1", command=("true",), run_id="r1"))
    assert int(e.value.exit_code) == 1
    assert f"w1 port: no answer from {target}" in e.value.message
    assert f"w3 port: no answer from {target}" in e.value.message
    assert "w0" not in e.value.message and "w2" not in e.value.message
    assert "20000-39999" in (e.value.hint or "")
    assert not any(w.runs for w in fleet.workers.values())  # nothing started anywhere
    assert "launch start" not in fleet.scripts()


def _creds(endpoint: str | None) -> Check:
    return Check("credentials", "ok", detail="test")


def test_doctor_tries_8476_and_the_latest_runs_port_unless_port_is_given():
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1")
    run_doctor(ports, DoctorRequest("n1"), credentials=_creds)
    assert _doctor_args(fleet) == {("current", f"{sl.workers[0].ip}:8476", "3", "latest")}
    fleet.script_calls.clear()
    run_doctor(ports, DoctorRequest("n1", port=9999), credentials=_creds)
    assert _doctor_args(fleet) == {("current", f"{sl.workers[0].ip}:9999", "3", "-")}


def test_doctor_names_a_dropped_run_port_with_the_per_run_range_fix():
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1")
    lines = healthy_doctor(2, ["current", f"{sl.workers[0].ip}:8476"])
    lines.append(f"check=run-port status=fail addr={sl.workers[0].ip} port=23456 run=r1 "
                 "result=filtered detail=no answer within 3s")
    fleet.doctor_lines[2] = lines
    report = run_doctor(ports, DoctorRequest("n1"), credentials=_creds)
    assert [(i, c.name) for i, c in report.problems()] == [(2, "run-port")]
    problem = report.to_dict()["problems"][0]
    assert problem["port"] == "23456" and problem["run"] == "r1"
    assert "8476 alone is not enough" in problem["fix"]
