"""Capacity and VM-option flags: each becomes the TPU v2 API field gcloud sends, each bad value
is one exit-2 error naming it and the fix, and the real client sends what --dry-run shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import fake_ports
from tests.unit.test_dryrun import _Client, _rest
from tpuctl.capacity import Capacity, capacity_of, parse_capacity
from tpuctl.cloud.bodies import node_fields, queued_fields
from tpuctl.dryrun.cloud import RecordingCloud
from tpuctl.dryrun.transcript import ApiCall, Transcript
from tpuctl.errors import CapacityError, ExitCode, UsageError
from tpuctl.model import NodeSpec
from tpuctl.ops.create import CreateEvents, CreateRequest, create
from tpuctl.vmoptions import (
    DataDisk,
    VmOptions,
    parse_data_disk,
    parse_metadata,
    parse_scopes,
    parse_service_account,
)

AUTH = "https://www.googleapis.com/auth/"
SPEC = NodeSpec(name="n1", accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
                labels={"managed-by": "tpuctl"}, description="tpuctl task n1")


def spec(cap: Capacity | None = None, vm: VmOptions | None = None) -> NodeSpec:
    return NodeSpec(**{**SPEC.__dict__, "capacity": cap or Capacity(), "vm": vm or VmOptions()})


# -- each flag → its field ---------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "node", "queued"), [
    ({}, {"schedulingConfig": {}}, {}),
    ({"spot": True}, {"schedulingConfig": {"spot": True}}, {"spot": {}}),
    ({"reserved": True}, {"schedulingConfig": {"reserved": True}},
     {"reservationName": "projects/p/locations/z/reservations/-"}),
    ({"reservation": "res-1"}, {"schedulingConfig": {"reserved": True}},
     {"reservationName": "projects/p/locations/z/reservations/res-1"}),
    ({"reservation": "projects/o/locations/z/reservations/r"},
     {"schedulingConfig": {"reserved": True}},
     {"reservationName": "projects/o/locations/z/reservations/r"}),
    ({"guaranteed": True}, {"schedulingConfig": {}}, {"guaranteed": {}}),
    ({"valid_until": "6h"}, {"schedulingConfig": {}},
     {"queueingPolicy": {"validUntilDuration": "21600s"}}),
    ({"valid_after": "30m"}, {"schedulingConfig": {}},
     {"queueingPolicy": {"validAfterDuration": "1800s"}}),
    ({"valid_after": "1m", "valid_until": "1h"}, {"schedulingConfig": {}},
     {"queueingPolicy": {"validInterval": {"startTime": "1970-01-01T00:01:00Z",
                                           "endTime": "1970-01-01T01:00:00Z"}}}),
])
def test_each_capacity_flag_becomes_gclouds_field(flags, node, queued):
    cap = parse_capacity(**flags)
    assert node_fields(spec(cap), "p", "z", queued=False) == node
    assert node_fields(spec(cap), "p", "z", queued=True) == {}  # the tier / reservation say it
    assert queued_fields(spec(cap), "p", "z", now=0) == queued


@pytest.mark.parametrize(("flags", "queue"), [
    ({}, False), ({"spot": True}, False), ({"reserved": True}, False),
    ({"reservation": "r"}, True), ({"guaranteed": True}, True), ({"valid_until": "1h"}, True),
    ({"valid_after": "1h"}, True), ({"queued": True}, True),
])
def test_queued_only_options_imply_a_queued_resource(flags, queue):
    ports, cloud, _ = fake_ports()
    cap = parse_capacity(**flags)
    create(ports, CreateRequest(name="n1", accelerator_type="v6e-8", capacity=cap))
    verb = "create_queued_resource" if queue else "create_node"
    assert cloud.changes() == [f"{verb} zone-a n1"]


@pytest.mark.parametrize(("flags", "named", "fix"), [
    ({"valid_until": "6 hours"}, "--valid-until '6 hours'", "e.g. 90s"),
    ({"valid_after": "-1h"}, "--valid-after '-1h'", "e.g. 90s"),
    ({"valid_until": "0s"}, "--valid-until '0s'", "duration"),
    ({"valid_after": "2h", "valid_until": "1h"}, "--valid-until 1h is not after", "longer"),
    ({"reservation": "Res_1"}, "--reservation 'Res_1'", "lowercase"),
    ({"reservation": "projects/p/zones/z/r"}, "--reservation 'projects/p/zones/z/r'",
     "reservations/NAME"),
    ({"spot": True, "reserved": True}, "--spot cannot be combined", "drop one"),
    ({"spot": True, "reservation": "r"}, "--spot cannot be combined", "drop one"),
    ({"spot": True, "guaranteed": True}, "--guaranteed", "one tier"),
])
def test_a_bad_capacity_value_is_exit_2_naming_it(flags, named, fix):
    with pytest.raises(UsageError) as e:
        parse_capacity(**flags)
    assert e.value.exit_code == ExitCode.USAGE
    assert named in e.value.message and fix in (e.value.hint or "")


def test_capacity_type_is_read_back_from_scheduling_config():
    assert [capacity_of(s) for s in ({}, {"spot": True}, {"preemptible": True},
                                     {"reserved": True})] == \
        ["on-demand", "spot", "preemptible", "reserved"]


# -- VM options ---------------------------------------------------------------------------------
def test_scopes_take_gclouds_aliases_and_urls_in_order_without_duplicates():
    assert parse_scopes(["storage-ro,cloud-platform", f"{AUTH}devstorage.read_only",
                         "userinfo-email"]) == (
        f"{AUTH}devstorage.read_only", f"{AUTH}cloud-platform", f"{AUTH}userinfo.email")
    assert len(parse_scopes(["default"])) == 7


def test_service_account_and_scopes_become_the_nodes_service_account():
    vm = VmOptions(service_account="sa@p.iam.gserviceaccount.com")
    assert node_fields(spec(vm=vm), "p", "z", queued=True) == {"serviceAccount": {
        "email": "sa@p.iam.gserviceaccount.com", "scope": [f"{AUTH}cloud-platform"]}}
    vm = VmOptions(scopes=parse_scopes(["storage-rw"]))
    assert node_fields(spec(vm=vm), "p", "z", queued=True) == {"serviceAccount": {
        "scope": [f"{AUTH}devstorage.read_write"]}}  # the project's default account


def test_data_disks_become_full_source_names_with_gclouds_modes():
    disks = (parse_data_disk("source=d1"), parse_data_disk("source=d2,mode=read-only"),
             parse_data_disk("mode=read-only,source=projects/o/zones/y/disks/d3"))
    assert node_fields(spec(vm=VmOptions(data_disks=disks)), "p", "z", queued=False)[
        "dataDisks"] == [
        {"sourceDisk": "projects/p/zones/z/disks/d1", "mode": "READ_WRITE"},
        {"sourceDisk": "projects/p/zones/z/disks/d2", "mode": "READ_ONLY"},
        {"sourceDisk": "projects/o/zones/y/disks/d3", "mode": "READ_ONLY"}]


def test_metadata_pairs_and_files_merge_with_tpuctls_ssh_key(tmp_path: Path):
    (tmp_path / "setup.sh").write_text("#!/bin/bash\necho hi\n")
    meta = parse_metadata(["team=ml", "note=a=b"], ["startup-script=setup.sh"], base=tmp_path)
    assert meta == {"team": "ml", "note": "a=b", "startup-script": "#!/bin/bash\necho hi\n"}
    ports, cloud, _ = fake_ports()
    create(ports, CreateRequest(name="n1", accelerator_type="v6e-8",
                                vm=VmOptions(metadata=meta)))
    got = cloud.get_node("n1").metadata
    assert got["startup-script"] == meta["startup-script"] and got["team"] == "ml"
    assert got["ssh-keys"].startswith("alice:ssh-ed25519")


@pytest.mark.parametrize(("call", "named", "fix"), [
    (lambda: parse_scopes(["storage-ro,"]), "an empty scope", "commas"),
    (lambda: parse_scopes(["storage"]), "unknown scope alias 'storage'", "storage-ro"),
    (lambda: parse_scopes(["https://example.com/auth/x"]), "invalid scope URL", AUTH),
    (lambda: parse_service_account("not-an-email"), "--service-account 'not-an-email'",
     "iam.gserviceaccount.com"),
    (lambda: parse_metadata(["team"]), "--metadata 'team': no '='", "KEY=VALUE"),
    (lambda: parse_metadata(["bad key=1"]), "--metadata key 'bad key'", "letters"),
    (lambda: parse_metadata(["ssh-keys=x"]), "ssh-keys is managed by tpuctl", "another key"),
    (lambda: parse_metadata(["a=1", "a=2"]), "'a' given twice", "once"),
    (lambda: parse_metadata(["a=" + "x" * 300_000]), "300000 bytes", "smaller"),
    (lambda: parse_metadata([], ["startup-script=/nonexistent/s.sh"]),
     "file '/nonexistent/s.sh' not found", "readable"),
    (lambda: parse_metadata([], ["startup-script"]), "--metadata-from-file 'startup-script'",
     "KEY=FILE"),
    (lambda: parse_data_disk("disk=d1"), "--data-disk 'disk=d1'", "source=DISK"),
    (lambda: parse_data_disk("source=d1,source=d2"), "--data-disk", "once each"),
    (lambda: parse_data_disk("source=D 1"), "source 'D 1'", "disks/NAME"),
    (lambda: parse_data_disk("source=d1,mode=rw"), "mode 'rw'", "mode=read-only"),
])
def test_a_bad_vm_option_is_exit_2_naming_it(call, named, fix):
    with pytest.raises(UsageError) as e:
        call()
    assert named in e.value.message and fix in (e.value.hint or "")


@pytest.mark.parametrize(("accel", "disks", "named"), [
    ("v6e-16", ("source=d1",), "read-write, but v6e-16 has 4 hosts"),
    ("v6e-8", ("source=d1", "source=d1,mode=read-only"), "'d1' given twice"),
])
def test_disks_a_node_cannot_attach_are_refused_before_any_call(accel, disks, named):
    ports, cloud, _ = fake_ports()
    vm = VmOptions(data_disks=tuple(parse_data_disk(d) for d in disks))
    with pytest.raises(UsageError, match=named):
        create(ports, CreateRequest(name="n1", accelerator_type=accel, vm=vm))
    assert cloud.calls == []


def test_a_read_only_disk_goes_on_a_multi_host_node():
    ports, cloud, _ = fake_ports()
    vm = VmOptions(data_disks=(DataDisk("d1", "READ_ONLY"),))
    assert create(ports, CreateRequest(name="n1", accelerator_type="v6e-16", vm=vm)).created


@given(st.text(max_size=80))
def test_hostile_flag_values_are_usage_errors_or_accepted(text: str):
    for call in (lambda: parse_data_disk(text), lambda: parse_scopes([text]),
                 lambda: parse_metadata([text]), lambda: parse_service_account(text),
                 lambda: parse_capacity(reservation=text),
                 lambda: parse_capacity(valid_until=text)):
        try:
            call()
        except UsageError as e:
            assert "\n" not in e.message[:200].replace(text, "")


# -- what the client sends is what --dry-run shows ----------------------------------------------
FULL_VM = VmOptions(service_account="sa@p.iam.gserviceaccount.com",
                    scopes=parse_scopes(["storage-ro"]),
                    data_disks=(DataDisk("d1", "READ_ONLY"),))


@pytest.mark.parametrize(("verb", "node"), [
    ("create_node", spec(parse_capacity(reserved=True), FULL_VM)),
    ("create_queued_resource", spec(parse_capacity(reservation="r1", valid_until="2h"),
                                    FULL_VM)),
    ("create_queued_resource", spec(parse_capacity(guaranteed=True, valid_after="1h"))),
    ("create_queued_resource", spec(parse_capacity(spot=True, valid_until="1h"))),
    ("create_queued_resource", NodeSpec(**{**spec().__dict__, "slices": 3})),
])
def test_the_client_sends_what_dry_run_records(verb: str, node: NodeSpec):
    from tpuctl.cloud.gcp import GcpCloud

    client = _Client()
    getattr(GcpCloud("proj", "zone-a", client=client), verb)(node)  # type: ignore[arg-type]
    ((sent_verb, request),) = client.calls
    t = Transcript()
    fake, _, _ = fake_ports()
    getattr(RecordingCloud(fake.cloud.in_zone("zone-a"), t, read_api=False), verb)(node)
    (call,) = t.steps
    assert isinstance(call, ApiCall)
    method, path, body = _rest(sent_verb, request)
    sent: dict[str, Any] = body or {}
    node_sent = sent["tpu"]["nodeSpec"][0]["node"] if "tpu" in sent else sent
    for disk in node_sent.get("dataDisks", []):  # the client sends enums as numbers
        assert disk["mode"] == 2
        disk["mode"] = "READ_ONLY"  # --dry-run shows their names
    if verb == "create_node":
        assert sent["schedulingConfig"] == {"reserved": True}
    assert (call.method, call.path, call.body) == (method, path, body)
    if node.capacity.reservation:
        assert sent["reservationName"] == "projects/proj/locations/zone-a/reservations/r1"
        assert sent["queueingPolicy"] == {"validUntilDuration": "7200s"}
        assert sent["tpu"]["nodeSpec"][0]["node"]["serviceAccount"]["email"] == \
            "sa@p.iam.gserviceaccount.com"


def test_a_failed_queued_resource_says_why_is_deleted_and_the_next_zone_is_tried():
    ports, cloud, _ = fake_ports()
    cloud.world.queued_errors["n1"] = "Reservation projects/p/locations/z/reservations/r " \
        "was not found (code 5)"
    cloud.world.stockout_zones.add("zone-c")

    class Seen(CreateEvents):
        said: list[str] = []

        def no_capacity(self, zone: str, message: str, next_zone: str) -> None:
            self.said.append(message)

    seen = Seen()
    with pytest.raises(CapacityError) as e:
        create(ports, CreateRequest(name="n1", accelerator_type="v6e-8",
                                    capacity=parse_capacity(reservation="r"),
                                    zones=("zone-a", "zone-b")), seen)
    assert "FAILED in zone-a: Reservation" in seen.said[0] and "was not found" in e.value.message
    assert [c for c in cloud.changes() if c.startswith("delete")] == [
        "delete_queued_resource zone-a n1", "delete_queued_resource zone-b n1"]


def test_reuse_compares_a_direct_nodes_capacity_type():
    import dataclasses

    ports, cloud, _ = fake_ports()
    create(ports, CreateRequest(name="n1", accelerator_type="v6e-8"))
    cloud.world.nodes[("zone-a", "n1")] = dataclasses.replace(
        cloud.get_node("n1"), capacity="on-demand")
    with pytest.raises(UsageError, match=r"capacity on-demand \(asked reserved\)"):
        create(ports, CreateRequest(name="n1", accelerator_type="v6e-8",
                                    capacity=parse_capacity(reserved=True)))
    assert not create(ports, CreateRequest(name="n1", accelerator_type="v6e-8")).created
