"""The VM options users set with gcloud, stored and checked as GCP does: service account and
scopes, labels, metadata (startup-script among them), data disks against a Compute disks
store (existence, zone, single-writer vs read-only), in the discovery document's shapes and
the client's protos; reservations and disks survive a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tpu_v2

from tests.conftest import tpu_client
from tests.emulator.conftest import FAST_DELAY, TOKEN, FakeWorkerHost
from tests.emulator.test_api_schema import call, check_response
from tests.emulator.test_capacity import admin, raw_error, reservation

PARENT = "projects/vmopt/locations/local-a"
DISKS = "/emulator/v1/projects/vmopt/zones/local-a/disks"
V6E = {"acceleratorType": "v6e-8", "runtimeVersion": "v2-alpha-tpuv6e"}


def disk(name: str, mode: str | None = "READ_WRITE") -> dict[str, Any]:
    out = {"sourceDisk": f"projects/vmopt/zones/local-a/disks/{name}"}
    return {**out, "mode": mode} if mode else out


def test_service_account_labels_and_metadata(fake_emulator: Any, client: Any,
                                             fast_polling: Any,
                                             unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    node_id = unique("sa")
    op = call(ep, "POST", f"{PARENT}/nodes?nodeId={node_id}", {
        **V6E, "serviceAccount": {"email": "trainer@vmopt.iam.gserviceaccount.com",
                                  "scope": ["https://www.googleapis.com/auth/devstorage.read_only"]},
        "labels": {"team": "research", "managed-by": "tpuctl"},
        "metadata": {"startup-script": "#!/bin/bash\necho hi\n", "enable-oslogin": "FALSE"},
        "tags": ["tpu"]})
    check_response(op, "Operation")
    got = client.get_node(name=f"{PARENT}/nodes/{node_id}")
    assert got.service_account.email == "trainer@vmopt.iam.gserviceaccount.com"
    assert list(got.service_account.scope) == [
        "https://www.googleapis.com/auth/devstorage.read_only"]
    assert got.labels["team"] == "research" and got.metadata["startup-script"].startswith("#!")
    check_response(call(ep, "GET", f"{PARENT}/nodes/{node_id}"), "Node")

    default = client.create_node(parent=PARENT, node_id=unique("dsa"), node=tpu_v2.Node(
        accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
        service_account=tpu_v2.ServiceAccount())).result(10, polling=fast_polling)
    assert default.service_account.email.endswith("-compute@developer.gserviceaccount.com")
    assert list(default.service_account.scope) == [
        "https://www.googleapis.com/auth/cloud-platform"]
    for name in (got.name, default.name):
        client.delete_node(name=name).result(10, polling=fast_polling)

    for body, words in [
        ({"labels": {"Team": "x"}}, "node.labels"),
        ({"labels": {"team": "Has Space"}}, "node.labels"),
        ({"metadata": {"bad key": "x"}}, "node.metadata"),
        ({"metadata": {"startup-script": "x" * (256 * 1024 + 1)}}, "256 KB"),
        ({"serviceAccount": {"email": "not-an-email"}}, "service_account.email"),
        ({"serviceAccount": {"scopes": ["x"]}}, 'Unknown name "scopes"'),
        ({"serviceAccount": {"scope": "cloud-platform"}}, "service_account.scope"),
    ]:
        err = raw_error(ep, "POST", f"{PARENT}/nodes?nodeId={unique('bad')}", {**V6E, **body})
        assert err["http"] == 400 and words in err["message"], err


def test_data_disks_follow_compute_rules(fake_emulator: Any, client: Any, fast_polling: Any,
                                         unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    name = unique("d")
    status, created = admin(ep, "POST", DISKS, {"name": name, "sizeGb": 20})
    assert status == 200 and created["sizeGb"] == "20" and "users" not in created
    image = fake_emulator.state_dir / "disks" / f"vmopt.local-a.{name}.img"
    assert image.stat().st_size == 20 << 30 and image.stat().st_blocks == 0  # sparse, blank
    assert admin(ep, "POST", DISKS, {"name": name})[0] == 409
    assert admin(ep, "POST", DISKS, {"name": "Bad_Name"})[0] == 400
    assert admin(ep, "POST", DISKS, {"name": "big", "sizeGb": 10**9})[0] == 400

    def create(node_id: str, disks: list[dict[str, Any]], acc: str = "v6e-8") -> Any:
        return client.create_node(parent=PARENT, node_id=node_id, node=tpu_v2.Node(
            accelerator_type=acc, runtime_version="v2-alpha-tpuv6e",
            data_disks=[tpu_v2.AttachedDisk(source_disk=d["sourceDisk"], mode=d.get("mode"))
                        for d in disks]))

    # checked when the create is called: the path, the zone, single-writer on one VM only
    for disks, words in [
        ([{"sourceDisk": name}], "projects/PROJECT/zones/ZONE/disks/DISK"),
        ([{"sourceDisk": f"projects/vmopt/zones/local-b/disks/{name}"}], "node's zone local-a"),
        ([disk(name), disk(name)], "attached twice"),
        ([disk(name, "WRITE_MANY")], "data_disks[0].mode"),
    ]:
        err = raw_error(ep, "POST", f"{PARENT}/nodes?nodeId={unique('x')}",
                        {**V6E, "dataDisks": disks})
        assert err["http"] == 400 and words in err["message"], err
    with pytest.raises(exceptions.BadRequest, match="single-writer"):
        create(unique("multi"), [disk(name)], acc="v6e-16")

    # checked when the create runs: the disk must exist, one writer or many readers
    with pytest.raises(exceptions.NotFound, match="was not found"):
        create(unique("ghost"), [disk("ghost")]).result(10, polling=fast_polling)
    writer = create(unique("w"), [disk(name, None)]).result(10, polling=fast_polling)
    assert writer.data_disks[0].mode == tpu_v2.AttachedDisk.DiskMode.READ_WRITE
    got = call(ep, "GET", writer.name)
    check_response(got, "Node")
    assert got["dataDisks"][0]["mode"] == 1  # an enum: a number for this client
    for mode in ("READ_WRITE", "READ_ONLY"):
        with pytest.raises(exceptions.FailedPrecondition, match="already being used by"):
            create(unique("w2"), [disk(name, mode)]).result(10, polling=fast_polling)
    users = admin(ep, "GET", f"/compute/v1/projects/vmopt/zones/local-a/disks/{name}")[1]["users"]
    assert len(users) == 1 and users[0].endswith("-w-0")
    assert admin(ep, "DELETE", f"{DISKS}/{name}")[1]["error"]["message"].startswith(
        "The disk resource")
    client.delete_node(name=writer.name).result(10, polling=fast_polling)

    readers = [create(unique("r"), [disk(name, "READ_ONLY")], acc=acc).result(
        10, polling=fast_polling) for acc in ("v6e-8", "v6e-16")]
    listed = admin(ep, "GET", "/compute/v1/projects/vmopt/zones/local-a/disks")[1]
    assert listed["kind"] == "compute#diskList"
    assert len(next(d for d in listed["items"] if d["name"] == name)["users"]) == 1 + 4
    for node in readers:
        client.delete_node(name=node.name).result(10, polling=fast_polling)
    assert admin(ep, "DELETE", f"{DISKS}/{name}") == (200, {})
    assert not image.exists()


def test_reservations_and_disks_survive_a_restart(tmp_path: Path) -> None:
    from tpuctl.emulator.server import run_in_thread

    def start() -> Any:
        return run_in_thread(tmp_path, create_delay=FAST_DELAY, token=TOKEN,
                             worker_host=lambda d, p: FakeWorkerHost(d, p))

    with start() as ep:
        reservation(ep, "kept", "v6e-16", parent=PARENT)
        assert admin(ep, "POST", DISKS, {"name": "kept", "sizeGb": 1})[0] == 200
        client = tpu_client(ep, TOKEN)
        client.create_node(parent=PARENT, node_id="held", node=tpu_v2.Node(
            accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
            scheduling_config=tpu_v2.SchedulingConfig(reserved=True),
            data_disks=[tpu_v2.AttachedDisk(source_disk=disk("kept")["sourceDisk"])],
        )).result(10)
    with start() as ep:
        view = admin(ep, "GET", f"/emulator/v1/{PARENT}/reservations/kept")[1]
        assert view["usedChips"] == 8 and view["users"] == [f"{PARENT}/nodes/held"]
        assert len(admin(ep, "GET", f"{DISKS}")[1]["disks"][0]["users"]) == 1


def test_control_functions_for_reservations_and_disks(fake_emulator: Any) -> None:
    from tpuctl.emulator import control
    from tpuctl.errors import NotFoundError, UsageError

    target = control.AdminTarget(fake_emulator.endpoint, TOKEN)
    made = control.create_reservation(target, "ctl", "local-a", "pool", "v5litepod-16", 2)
    assert (made["chips"], made["freeChips"]) == (32, 32)
    assert [r["name"] for r in control.list_reservations(target, "ctl", "local-a")] == [
        "projects/ctl/locations/local-a/reservations/pool"]
    with pytest.raises(UsageError, match="count"):
        control.create_reservation(target, "ctl", "local-a", "bad", "v5litepod-16", 0)
    control.delete_reservation(target, "ctl", "local-a", "pool")
    with pytest.raises(NotFoundError):
        control.delete_reservation(target, "ctl", "local-a", "pool")
    assert control.create_disk(target, "ctl", "local-a", "scratch", 3)["sizeGb"] == "3"
    assert [d["name"] for d in control.list_disks(target, "ctl", "local-a")] == ["scratch"]
    control.delete_disk(target, "ctl", "local-a", "scratch")
    assert control.list_disks(target, "ctl", "local-a") == []
