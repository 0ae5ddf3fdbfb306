"""`tpuctl doctor`'s logic on fake ports: doctor.sh's lines parsed (hostile ones too), what only
holds across workers (versions agreeing, clock offsets), each failure named with its worker,
check and fix, and the exit codes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import fake_ports, healthy_doctor
from tpuctl.ops.doctor import DoctorRequest, key_check, run_doctor, ssh_config_check
from tpuctl.ops.doctor_checks import (
    FIXES,
    STATUSES,
    Check,
    DoctorReport,
    agree,
    clock_check,
    parse_lines,
)


def creds(endpoint: str | None) -> Check:
    return Check("credentials", "ok", detail="test")


def doctor(ports, name: str | None = "n1", **kw) -> DoctorReport:
    return run_doctor(ports, DoctorRequest(name, **kw), credentials=creds)


def bad(report: DoctorReport) -> list[tuple[int | None, str]]:
    return [(i, c.name) for i, c in report.problems()]


def test_a_healthy_node_exits_0_with_every_worker_checked():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    report = doctor(ports)
    assert report.exit_code == 0 and bad(report) == []
    assert sorted(report.workers) == [0, 1, 2, 3]
    names = [c.name for c in report.workers[2]]
    assert names[:2] == ["ssh", "clock"] and "port" in names and "packages" in names
    assert {c.name: c.status for c in report.local}["login"] == "ok"
    # every worker tries worker 0's internal address on the coordinator port
    calls = [a for _, _, s, a in fleet.script_calls if s == "doctor"]
    assert {a[1] for a in calls} == {f"{cloud.get_node('n1').workers[0].ip}:8476"}
    assert report.to_dict()["healthy"] is True


def test_each_bad_worker_is_named_with_its_check_and_fix():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    lines = healthy_doctor(1, ["current", "10.0.0.1:8476"])
    lines[0] = ("check=disk-home status=fail free_mb=100 used_pct=100 detail=/home/a is full:"
                " 100 MB free")
    fleet.doctor_lines[1] = lines
    held = healthy_doctor(3, ["current", "10.0.0.1:8476"])
    held[2] = "check=tpu status=fail holders=1 detail=pid=42 cmd=python3 train.py"
    fleet.doctor_lines[3] = held
    report = doctor(ports)
    assert bad(report) == [(1, "disk-home"), (3, "tpu")]
    assert report.exit_code == 1
    doc = report.to_dict()
    assert doc["problems"][1]["worker"] == 3 and "train.py" in doc["problems"][1]["detail"]
    assert doc["problems"][0]["fix"] == FIXES["disk-home"]


def test_package_versions_must_agree_across_workers():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    skewed = healthy_doctor(2, ["current", "10.0.0.1:8476"])
    skewed[6] = "check=packages status=ok jax=0.4.36 jaxlib=0.4.35 libtpu=0.0.5"
    fleet.doctor_lines[2] = skewed
    report = doctor(ports)
    assert bad(report) == [(2, "packages")]
    [(_, c)] = report.problems()
    assert "jax=0.4.36" in c.detail and "w0, w1, w3" in c.detail


def test_a_skewed_clock_is_named():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    fleet.clock_skew = {1: 5.0, 2: 600.0}
    report = doctor(ports)
    clocks = {i: next(c for c in cs if c.name == "clock") for i, cs in report.workers.items()}
    assert clocks[0].status == "ok" and clocks[1].status == "warn"
    assert clocks[2].status == "fail" and clocks[2].fields["offset_s"].startswith("+6")
    assert bad(report) == [(2, "clock")]


def test_an_unreachable_worker_fails_ssh_and_the_others_are_still_checked():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    fleet.unreachable = {1}
    report = doctor(ports)
    assert bad(report) == [(1, "ssh")]
    assert [c.name for c in report.workers[1]] == ["ssh"]
    assert len(report.workers[0]) > 5


def test_a_partial_slice_is_reported_not_waited_for():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1")
    cloud.world.missing["n1"] = 1
    report = doctor(ports)
    assert bad(report) == [(None, "workers")]
    assert "missing: w3" in report.problems()[0][1].detail
    assert sorted(report.workers) == [0, 1, 2]  # the registered ones are still checked


def test_a_worker_registered_under_another_number_fails_metadata():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    fleet.doctor_lines[1] = healthy_doctor(2, ["current", "10.0.0.1:8476"])
    assert bad(doctor(ports)) == [(1, "metadata")]


def test_no_such_node_exits_3_and_a_node_without_external_ips_names_the_ways_in():
    ports, cloud, fleet = fake_ports()
    report = doctor(ports, "ghost")
    assert report.exit_code == 3 and bad(report) == [(None, "node")]
    cloud.add_node("private", external_ips=False)
    report = doctor(ports, "private")
    assert bad(report) == [(None, "route")] and report.exit_code == 1
    assert "--ssh-proxy-jump" in report.problems()[0][1].detail
    assert fleet.script_calls == []  # nothing tried that could only hang


def test_a_preempted_node_exits_6():
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1", state="PREEMPTED")
    report = doctor(ports)
    assert report.exit_code == 6 and bad(report) == [(None, "node")]


def test_without_a_node_only_this_machine_is_checked():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("a")
    report = doctor(ports, None)
    assert report.exit_code == 0 and report.workers == {}
    assert {c.name: c.fields.get("nodes") for c in report.local}["api"] == "1"
    assert fleet.script_calls == []


def test_key_and_ssh_config_permissions(tmp_path: Path):
    key = tmp_path / "k"
    assert key_check(key).status == "ok"  # made on first use
    key.write_text("x")
    key.chmod(0o644)
    assert key_check(key).status == "fail"
    key.chmod(0o600)
    assert key_check(key).status == "ok"
    assert ssh_config_check(tmp_path).status in ("ok", "warn")  # no ~/.ssh/config
    (tmp_path / ".ssh").mkdir()
    config = tmp_path / ".ssh" / "config"
    config.write_text("Host *\n")
    config.chmod(0o666)
    got = ssh_config_check(tmp_path)
    assert got.status == "fail" and "bad owner or permissions" in got.detail
    config.chmod(0o600)
    assert ssh_config_check(tmp_path).status in ("ok", "warn")


def test_parse_lines_reads_doctor_sh_and_ignores_chatter():
    got = parse_lines("motd line\ncheck=tpu status=fail holders=2 detail=pid=1 cmd=a b; "
                      "pid=2 cmd=c\ncheck=port status=skip\ncheck=x status=bogus\n")
    assert [(c.name, c.status) for c in got] == [("tpu", "fail"), ("port", "skip"),
                                                 ("x", "fail")]
    assert got[0].fields == {"holders": "2"} and got[0].detail == "pid=1 cmd=a b; pid=2 cmd=c"


@given(st.text(max_size=400))
def test_parse_lines_never_raises_on_hostile_output(text: str):
    for c in parse_lines(text):
        assert c.status in STATUSES and len(c.name) <= 40 and len(c.detail) <= 500


def test_clock_check_allows_for_the_round_trip():
    assert clock_check("100.0", 99.0, 101.0).status == "ok"
    assert clock_check("103.5", 99.0, 101.0).status == "warn"  # 3.5 off, 1 s uncertain
    assert clock_check("200", 99.0, 101.0).status == "fail"
    assert clock_check("garbage", 99.0, 101.0).status == "warn"


def test_agree_marks_the_minority():
    def pk(jax: str) -> Check:
        return Check("packages", "ok", {"jax": jax, "jaxlib": "1", "libtpu": "-"})

    got = agree({0: pk("1"), 1: pk("1"), 2: pk("2"), 3: Check("packages", "skip")})
    assert [i for i, c in got.items() if c.bad] == [2]
    assert agree({0: pk("1"), 1: pk("1")}) == {0: pk("1"), 1: pk("1")}



def test_credentials_for_gcp_come_from_adc_and_for_an_endpoint_from_its_token():
    from tpuctl.ops.doctor import credentials_check

    assert credentials_check(None, lambda: (True, "ADC (Credentials)")).status == "ok"
    missing = credentials_check(None, lambda: (False, "Your default credentials were not "
                                                      "found."))
    assert missing.status == "fail" and missing.to_dict()["fix"] == FIXES["credentials"]
    # an endpoint without a token of its own (no emulator.json names it)
    assert credentials_check("http://127.0.0.1:1", lambda: (True, "")).status == "warn"


def test_a_partial_worker_list_is_never_cached_for_a_later_command():
    from tpuctl.errors import NodeNotReady
    from tpuctl.ops.access import cached_access

    ports, cloud, _ = fake_ports()
    cloud.add_node("n1")
    cloud.world.missing["n1"] = 1
    doctor(ports)
    assert "n1" not in ports.local.accesses  # type: ignore[attr-defined]
    with pytest.raises(NodeNotReady, match="3 of 4 workers"):
        cached_access(dataclasses.replace(ports, worker_wait=0), "n1")


def test_launch_refuses_a_full_disk_or_blank_metadata_before_starting_anything():
    from tpuctl.errors import RemoteCommandError
    from tpuctl.ops.launch import LaunchRequest, launch_node

    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    full = healthy_doctor(2, ["-", "-"])
    full[1] = "check=disk-tmp status=fail free_mb=10 used_pct=100 detail=/tmp is full"
    fleet.doctor_lines[2] = full
    blank = healthy_doctor(3, ["-", "-"])
    blank[8] = ("check=metadata status=fail worker=- workers=0 detail=blank TPU metadata: "
                "this host did not register")
    fleet.doctor_lines[3] = blank
    with pytest.raises(RemoteCommandError) as e:
        launch_node(ports, LaunchRequest("n1", command=("python", "x.py"), run_id="r1"))
    assert "w2 disk-tmp: /tmp is full" in e.value.message
    assert "w3 metadata: blank TPU metadata" in e.value.message
    assert "free space under /tmp" in (e.value.hint or "")
    assert not any(w.runs for w in fleet.workers.values())  # nothing started anywhere
    assert "launch start" not in fleet.scripts()


def test_launch_refuses_a_host_registered_under_another_worker_number():
    from tpuctl.errors import RemoteCommandError
    from tpuctl.ops.launch import LaunchRequest, launch_node

    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1")
    fleet.doctor_lines[1] = healthy_doctor(0, ["-", "-"])
    with pytest.raises(RemoteCommandError, match="w1 metadata: this host registered as "
                       "worker 0, the API lists it as worker 1"):
        launch_node(ports, LaunchRequest("n1", command=("true",), run_id="r1"))


def test_bootstrap_on_a_node_without_external_ips_warns_about_cloud_nat():
    import dataclasses as dc

    from tpuctl.ops.bootstrap import BootstrapRequest, bootstrap_node

    said: list[str] = []
    ports, cloud, _ = fake_ports()
    ports = dc.replace(ports, notice=said.append,
                       route=dc.replace(ports.route, internal_ip=True))
    cloud.add_node("private", external_ips=False)
    cloud.add_node("public")
    bootstrap_node(ports, BootstrapRequest("public"))
    assert said == []
    bootstrap_node(ports, BootstrapRequest("private"))
    assert len(said) == 1 and "Cloud NAT" in said[0] and "4 worker(s)" in said[0]
