"""`create`'s capacity and VM-option flags through the real CLI and client: what the emulator
stored is the field gcloud would have sent; a FAILED queued resource moves on to the next
zone; `list` and `describe` show the capacity type. Lean: one-host v6e-8 nodes, --no-wait
where READY is not the point."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.conftest import Cli, Emulator

pytestmark = pytest.mark.e2e
PROJECT = "local-project"
SA = "trainer@local-project.iam.gserviceaccount.com"
AUTH = "https://www.googleapis.com/auth/"


def stored(emulator: Emulator, path: str) -> dict[str, Any]:
    """The resource as the emulator keeps it (GET on the TPU v2 API)."""
    req = urllib.request.Request(f"{emulator.endpoint}/v2/projects/{PROJECT}/locations/{path}",
                                 headers={"Authorization": f"Bearer {emulator.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback
        body: dict[str, Any] = json.loads(resp.read())
        return body


def admin_json(emulator: Emulator, path: str, body: dict[str, Any]) -> Any:
    return emulator.admin("POST", f"projects/{PROJECT}/{path}", json.dumps(body).encode())


@pytest.fixture(scope="module")
def capacity_setup(emulator: Emulator) -> Emulator:
    admin_json(emulator, "locations/local-a/reservations",
               {"reservationId": "res-a", "acceleratorType": "v6e-8", "count": 2})
    admin_json(emulator, "locations/local-b/reservations",
               {"reservationId": "res-b", "acceleratorType": "v6e-8", "count": 1})
    admin_json(emulator, "zones/local-a/disks", {"name": "cap-data", "sizeGb": 1})
    return emulator


def test_node_flags_reach_the_api_as_gcloud_sends_them(capacity_setup: Emulator, cli: Cli,
                                                       tmp_path):
    script = tmp_path / "boot.sh"
    script.write_text("echo booted\n")
    r = cli("create", "cap-node", "--type", "v6e-8", "--reserved", "--service-account", SA,
            "--scopes", "storage-ro,cloud-platform", "--metadata", "team=ml",
            "--metadata-from-file", f"startup-script={script}",
            "--data-disk", "source=cap-data,mode=read-only", "--no-wait", "--json")
    try:
        assert r.returncode == 0, r.stderr
        node = stored(capacity_setup, "local-a/nodes/cap-node")
        assert node["schedulingConfig"] == {"reserved": True, "spot": False,
                                            "preemptible": False}
        assert node["serviceAccount"] == {
            "email": SA, "scope": [f"{AUTH}devstorage.read_only", f"{AUTH}cloud-platform"]}
        assert node["metadata"]["team"] == "ml"
        assert node["metadata"]["startup-script"] == "echo booted\n"
        assert "ssh-keys" in node["metadata"]  # tpuctl's key beside the user's metadata
        assert node["dataDisks"] == [{"sourceDisk": f"projects/{PROJECT}/zones/local-a/disks/"
                                      "cap-data", "mode": "READ_ONLY"}]
        listed = json.loads(cli("list", "--json").stdout)
        assert [n["capacity"] for n in listed if n["name"] == "cap-node"] == ["reserved"]
        described = cli("describe", "cap-node").stdout
        assert "capacity  reserved" in described
    finally:
        assert cli("delete", "cap-node", "--yes").returncode == 0


def test_queued_flags_reach_the_queued_resource(capacity_setup: Emulator, cli: Cli):
    r = cli("create", "cap-queued", "--type", "v6e-8", "--reservation", "res-a",
            "--valid-until", "6h", "--no-wait")
    try:
        assert r.returncode == 0, r.stderr
        qr = stored(capacity_setup, "local-a/queuedResources/cap-queued")
        assert qr["reservationName"] == \
            f"projects/{PROJECT}/locations/local-a/reservations/res-a"
        assert qr["queueingPolicy"] == {"validUntilDuration": "21600s"}
        assert "spot" not in qr and "guaranteed" not in qr
    finally:
        cli("delete", "cap-queued", "--yes")
    r = cli("create", "cap-later", "--type", "v6e-8", "--guaranteed", "--valid-after", "2h",
            "--no-wait")
    try:
        assert r.returncode == 0, r.stderr
        qr = stored(capacity_setup, "local-a/queuedResources/cap-later")
        assert qr["guaranteed"] == {} and qr["queueingPolicy"] == {
            "validAfterDuration": "7200s"}
        # never provisioned before its valid-after
        assert qr["state"]["state"] in ("ACCEPTED", "WAITING_FOR_RESOURCES")
    finally:
        cli("delete", "cap-later", "--yes")


def test_spot_and_a_valid_interval_reach_the_api(capacity_setup: Emulator, cli: Cli):
    r = cli("create", "cap-spot", "--type", "v6e-8", "--spot", "--no-wait")
    try:
        assert r.returncode == 0, r.stderr
        assert stored(capacity_setup, "local-a/nodes/cap-spot")["schedulingConfig"][
            "spot"] is True
    finally:
        cli("delete", "cap-spot", "--yes")
    r = cli("create", "cap-window", "--type", "v6e-8", "--spot", "--valid-after", "1h",
            "--valid-until", "3h", "--no-wait")
    try:
        assert r.returncode == 0, r.stderr
        qr = stored(capacity_setup, "local-a/queuedResources/cap-window")
        assert qr["spot"] == {} and "reservationName" not in qr
        window = qr["queueingPolicy"]["validInterval"]
        from datetime import datetime

        start, end = (datetime.fromisoformat(window[k].replace("Z", "+00:00"))
                      for k in ("startTime", "endTime"))
        assert (end - start).total_seconds() == 7200
    finally:
        cli("delete", "cap-window", "--yes")


def test_a_missing_reservation_fails_the_zone_and_the_next_zone_serves(
        capacity_setup: Emulator, cli: Cli):
    """res-b exists only in local-b: local-a's queued resource goes FAILED (exit 4 there),
    is deleted, and the next zone provisions it."""
    r = cli("create", "cap-fallback", "--type", "v6e-8", "--reservation", "res-b",
            "--zone", "local-a,local-b", "--timeout", "60", "--json", timeout=180)
    try:
        assert r.returncode == 0, r.stderr
        node = json.loads(r.stdout)["node"]
        assert node["zone"] == "local-b" and node["capacity"] == "reserved"
        assert "FAILED" in r.stderr and "local-b" in r.stderr
        assert "res-b was not found" in r.stderr  # the API's reason, not just the state
        with pytest.raises(urllib.error.HTTPError):  # nothing left behind in local-a
            stored(capacity_setup, "local-a/queuedResources/cap-fallback")
    finally:
        cli("delete", "cap-fallback", "--yes", "--zone", "local-b")


@pytest.mark.parametrize(("flags", "named"), [
    (("--valid-until", "6hours"), "invalid --valid-until '6hours'"),
    (("--scopes", "storage"), "unknown scope alias 'storage'"),
    (("--data-disk", "source=cap-data"), "read-write, but v6e-16 has 4 hosts"),
])
def test_a_bad_flag_is_exit_2_before_any_call(cli: Cli, flags, named):
    r = cli("create", "cap-bad", "--type", "v6e-16", *flags)
    assert r.returncode == 2
    assert named in r.stderr and len(r.stderr.strip().splitlines()) <= 2  # error + hint
