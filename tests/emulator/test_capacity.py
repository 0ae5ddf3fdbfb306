"""Capacity through the real client and raw JSON: schedulingConfig, reservations, queued
resources' tiers, queueing policy and reservation names, multislice groups (all or none,
per-slice preemption), as GCP checks and runs them."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tpu_v2

from tests.conftest import wait_until
from tests.emulator.conftest import TOKEN
from tests.emulator.test_api_schema import call, check_response

PARENT = "projects/cap/locations/local-a"
State = tpu_v2.Node.State
QState = tpu_v2.QueuedResourceState.State
V6E = {"acceleratorType": "v6e-8", "runtimeVersion": "v2-alpha-tpuv6e"}


def admin(endpoint: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw_error(endpoint: str, method: str, path: str, body: Any) -> dict[str, Any]:
    with pytest.raises(urllib.error.HTTPError) as err:
        call(endpoint, method, path, body)
    envelope: dict[str, Any] = json.loads(err.value.read())["error"]
    envelope["http"] = err.value.code
    return envelope


@contextmanager
def faults(endpoint: str, **values: Any) -> Iterator[None]:
    assert admin(endpoint, "POST", "/emulator/v1/faults", values)[0] == 200
    try:
        yield
    finally:
        admin(endpoint, "POST", "/emulator/v1/faults", dict.fromkeys(values))


def reservation(endpoint: str, rid: str, acc: str, count: int = 1,
                parent: str = PARENT) -> dict[str, Any]:
    status, body = admin(endpoint, "POST", f"/emulator/v1/{parent}/reservations",
                         {"reservationId": rid, "acceleratorType": acc, "count": count})
    assert status == 200, body
    return body


def qr_state(client: Any, name: str) -> Any:
    return client.get_queued_resource(name=name).state


def create_qr(endpoint: str, qr_id: str, body: dict[str, Any]) -> str:
    op = call(endpoint, "POST", f"{PARENT}/queuedResources?queuedResourceId={qr_id}", body)
    check_response(op, "Operation")
    return f"{PARENT}/queuedResources/{qr_id}"


def spec(node_id: str | None = None, count: int | None = None, prefix: str | None = None,
         node: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"parent": PARENT, "node": node or dict(V6E)}
    if node_id:
        out["nodeId"] = node_id
    if count is not None:
        out["multisliceParams"] = {"nodeCount": count, **({"nodeIdPrefix": prefix}
                                                          if prefix else {})}
    return out


# ---------------------------------------------------------------- nodes


def test_scheduling_config_is_checked_and_stored(fake_emulator: Any, client: Any,
                                                 fast_polling: Any,
                                                 unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    for bad, words in [({"spot": True, "reserved": True}, "mutually exclusive"),
                       ({"preemptible": True, "spot": True}, "mutually exclusive"),
                       ({"spot": "yes"}, "scheduling_config.spot"),
                       ({"provisioningModel": "SPOT"}, 'Unknown name "provisioningModel"')]:
        err = raw_error(ep, "POST", f"{PARENT}/nodes?nodeId={unique('s')}",
                        {**V6E, "schedulingConfig": bad})
        assert err["http"] == 400 and err["status"] == "INVALID_ARGUMENT"
        assert words in err["message"]
    node = client.create_node(parent=PARENT, node_id=unique("spot"), node=tpu_v2.Node(
        accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
        scheduling_config=tpu_v2.SchedulingConfig(spot=True))).result(10, polling=fast_polling)
    assert node.scheduling_config.spot and not node.scheduling_config.reserved
    client.delete_node(name=node.name).result(10, polling=fast_polling)


def test_reserved_nodes_draw_on_reservations(fake_emulator: Any, client: Any,
                                             fast_polling: Any,
                                             unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    parent = "projects/resv/locations/local-b"

    def reserved(node_id: str, acc: str = "v6e-8") -> Any:
        return client.create_node(parent=parent, node_id=node_id, node=tpu_v2.Node(
            accelerator_type=acc, runtime_version="v2-alpha-tpuv6e",
            scheduling_config=tpu_v2.SchedulingConfig(reserved=True)))

    # no reservation: the create operation fails as GCP's does, code 8, and the node is gone
    with pytest.raises(exceptions.ResourceExhausted, match="Insufficient reserved capacity"):
        reserved("none").result(10, polling=fast_polling)
    with pytest.raises(exceptions.NotFound):
        client.get_node(name=f"{parent}/nodes/none")

    res = reservation(ep, "team", "v6e-16", parent=parent)  # 16 v6e chips
    assert (res["chips"], res["freeChips"], res["users"]) == (16, 16, [])
    a, b = reserved("ra").result(10, polling=fast_polling), reserved("rb").result(
        10, polling=fast_polling)
    assert a.scheduling_config.reserved
    view = admin(ep, "GET", f"/emulator/v1/{parent}/reservations/team")[1]
    assert view["freeChips"] == 0 and sorted(view["users"]) == sorted([a.name, b.name])
    with pytest.raises(exceptions.ResourceExhausted, match="Insufficient reserved capacity"):
        reserved("rc").result(10, polling=fast_polling)  # full
    with pytest.raises(exceptions.ResourceExhausted):  # chips of another generation
        client.create_node(parent=parent, node_id="v5", node=tpu_v2.Node(
            accelerator_type="v5litepod-4", runtime_version="v2-alpha-tpuv5-lite",
            scheduling_config=tpu_v2.SchedulingConfig(reserved=True))).result(
            10, polling=fast_polling)
    assert admin(ep, "DELETE", f"/emulator/v1/{parent}/reservations/team")[0] == 400  # in use

    # a stockout does not touch reserved capacity: reserved creates go on, others fail
    with faults(ep, **{"stockout-zones": "local-b"}):
        client.delete_node(name=a.name).result(10, polling=fast_polling)  # chips come back
        assert reserved("rc").result(10, polling=fast_polling).state == State.READY
        with pytest.raises(exceptions.ResourceExhausted, match="no more capacity"):
            client.create_node(parent=parent, node_id="od", node=tpu_v2.Node(
                accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e")).result(
                10, polling=fast_polling)
    for n in ("rb", "rc"):
        client.delete_node(name=f"{parent}/nodes/{n}").result(10, polling=fast_polling)
    assert admin(ep, "DELETE", f"/emulator/v1/{parent}/reservations/team") == (200, {})


def test_reservation_admin_calls_refuse_bad_input(fake_emulator: Any) -> None:
    ep = fake_emulator.endpoint
    path = f"/emulator/v1/{PARENT}/reservations"
    for body, words in [({"reservationId": "Bad", "acceleratorType": "v6e-8"}, "reservationId"),
                        ({"reservationId": "r", "acceleratorType": "v9-8"}, "acceleratorType"),
                        ({"reservationId": "r", "acceleratorType": "v6e-8", "count": 0}, "count"),
                        ({"reservationId": "r", "acceleratorType": "v6e-8", "x": 1}, "'x'")]:
        status, err = admin(ep, "POST", path, body)
        assert status == 400 and words in err["error"]["message"]
    assert admin(ep, "GET", f"{path}/missing")[0] == 404
    reservation(ep, "dup", "v5p-8")
    assert admin(ep, "POST", path, {"reservationId": "dup", "acceleratorType": "v5p-8"})[0] == 409
    assert [r["name"] for r in admin(ep, "GET", path)[1]["reservations"]] == [f"{PARENT}/"
                                                                             "reservations/dup"]
    assert admin(ep, "DELETE", f"{path}/dup") == (200, {})


# ---------------------------------------------------------------- queued resources


@pytest.mark.parametrize("body,words", [
    ({"tpu": {"nodeSpec": [spec("x")]}, "spot": {}, "guaranteed": {}},
     "Invalid value at 'queued_resource' (oneof), oneof field 'tier' is already set. Cannot "
     "set 'guaranteed'"),
    ({"tpu": {"nodeSpec": [spec("x")]},
      "queueingPolicy": {"validAfterDuration": "60s", "validUntilDuration": "120s"}},
     "oneof field 'start_timing_constraints' is already set. Cannot set 'validUntilDuration'"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "queueingPolicy": {"validUntilDuration": "1h"}},
     "google.protobuf.Duration"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "queueingPolicy": {"validAfterTime": "tomorrow"}},
     "google.protobuf.Timestamp"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "queueingPolicy": {"validInterval": {
        "startTime": "2030-01-02T00:00:00Z", "endTime": "2030-01-01T00:00:00Z"}}},
     "end_time must be after start_time"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "guaranteed": {"minDuration": "soon"}},
     "guaranteed.min_duration"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "bestEffort": {}}, 'Unknown name "bestEffort"'),
    ({"tpu": {"nodeSpec": [spec("x")]}, "spot": {},
      "reservationName": f"{PARENT}/reservations/r"}, "spot tier cannot use a reservation"),
    ({"tpu": {"nodeSpec": [spec("x")]}, "reservationName": "r"},
     "projects/{project}/locations/{zone}/reservations/{reservation}"),
    ({"tpu": {"nodeSpec": [spec("x")]},
      "reservationName": "projects/cap/locations/local-b/reservations/r"}, "zone local-a"),
    ({"tpu": {"nodeSpec": [{**spec("x", count=2)}]}},
     "oneof field 'name_strategy' is already set. Cannot set 'multisliceParams'"),
    ({"tpu": {"nodeSpec": [spec(count=1)]}}, "It must be greater than 1"),
    ({"tpu": {"nodeSpec": [spec()]}}, "one of node_id and multislice_params is required"),
    ({"tpu": {"nodeSpec": [spec("x", node={**V6E, "schedulingConfig": {"reserved": True}})]},
      "spot": {}}, "contradicts the queued resource's spot tier"),
    ({"tpu": {"nodeSpec": []}}, "at least one node spec"),
])
def test_queued_resource_requests_are_checked(fake_emulator: Any, body: dict[str, Any],
                                              words: str) -> None:
    err = raw_error(fake_emulator.endpoint, "POST",
                    f"{PARENT}/queuedResources?queuedResourceId=badreq", body)
    assert err["http"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert words in err["message"]


def test_valid_after_waits_and_valid_until_fails(fake_emulator: Any, client: Any,
                                                 unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    asked = time.monotonic()
    later = create_qr(ep, unique("after"), {"tpu": {"nodeSpec": [spec(unique("na"))]},
                                            "queueingPolicy": {"validAfterDuration": "0.6s"}})
    seen = wait_until(lambda: qr_state(client, later),
                      lambda s: s.state in (QState.WAITING_FOR_RESOURCES, QState.ACTIVE),
                      timeout=5)
    wait_until(lambda: qr_state(client, later), lambda s: s.state == QState.ACTIVE, timeout=10)
    assert time.monotonic() - asked >= 0.55  # held until its valid-after time
    if seen.state == QState.WAITING_FOR_RESOURCES:  # (a slow machine may not see it waiting)
        assert seen.state_initiator == tpu_v2.QueuedResourceState.StateInitiator.SERVICE

    with faults(ep, **{"stockout-zones": "local-a"}):  # nothing frees up in time
        doomed = create_qr(ep, unique("until"), {
            "tpu": {"nodeSpec": [spec(unique("nu"))]}, "spot": {},
            "queueingPolicy": {"validUntilDuration": "0.4s"}})
        failed = wait_until(lambda: qr_state(client, doomed),
                            lambda s: s.state == QState.FAILED, timeout=10)
    assert "valid-until" in failed.failed_data.error.message
    assert failed.failed_data.error.code == 4
    got = call(ep, "GET", doomed)
    check_response(got, "QueuedResource")
    for name in (later, doomed):
        client.delete_queued_resource(request={"name": name, "force": True}).result(10)


def test_queued_resources_on_reservations(fake_emulator: Any, client: Any,
                                          unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    missing = create_qr(ep, unique("nores"), {
        "tpu": {"nodeSpec": [spec(unique("n"))]}, "guaranteed": {"minDuration": "3600s"},
        "reservationName": f"{PARENT}/reservations/nowhere"})
    failed = wait_until(lambda: qr_state(client, missing), lambda s: s.state == QState.FAILED)
    assert failed.failed_data.error.code == 5 and "nowhere" in failed.failed_data.error.message
    for ints in (True, False):
        check_response(call(ep, "GET", missing, ints=ints), "QueuedResource")

    # `-` (gcloud's --reserved): any of the project's reservations; waits until one has room
    node_id = unique("rn")
    waiting = create_qr(ep, unique("anyres"), {
        "tpu": {"nodeSpec": [spec(node_id)]}, "reservationName": f"{PARENT}/reservations/-"})
    wait_until(lambda: qr_state(client, waiting),
               lambda s: s.state == QState.WAITING_FOR_RESOURCES)
    rid = unique("pool")
    reservation(ep, rid, "v6e-8")
    wait_until(lambda: qr_state(client, waiting), lambda s: s.state == QState.ACTIVE)
    node = client.get_node(name=f"{PARENT}/nodes/{node_id}")
    assert node.scheduling_config.reserved and node.queued_resource == waiting
    view = admin(ep, "GET", f"/emulator/v1/{PARENT}/reservations/{rid}")[1]
    assert view["users"] == [node.name]
    with faults(ep, **{"stockout-zones": "local-a"}):  # a held reservation is no stockout
        client.delete_queued_resource(request={"name": waiting, "force": True}).result(10)
        again = create_qr(ep, unique("again"), {
            "tpu": {"nodeSpec": [spec(unique("rn"))]},
            "reservationName": f"{PARENT}/reservations/{rid}"})
        wait_until(lambda: qr_state(client, again), lambda s: s.state == QState.ACTIVE)
    for name in (missing, again):
        client.delete_queued_resource(request={"name": name, "force": True}).result(10)
    assert admin(ep, "DELETE", f"/emulator/v1/{PARENT}/reservations/{rid}")[0] == 200


def test_multislice_group_all_or_none(fake_emulator: Any, client: Any,
                                      unique: Callable[[str], str]) -> None:
    ep = fake_emulator.endpoint
    qr_id = unique("ms")
    with faults(ep, **{"stockout-zones": "local-a"}):  # one stockout holds every slice
        group = create_qr(ep, qr_id, {"tpu": {"nodeSpec": [spec(count=3)]}, "spot": {}})
        wait_until(lambda: qr_state(client, group),
                   lambda s: s.state == QState.WAITING_FOR_RESOURCES)
        assert not [n for n in client.list_nodes(parent=PARENT) if qr_id in n.name]
    wait_until(lambda: qr_state(client, group), lambda s: s.state == QState.ACTIVE)
    nodes = [client.get_node(name=f"{PARENT}/nodes/{qr_id}-{i}") for i in range(3)]
    assert all(n.multislice_node and n.scheduling_config.spot for n in nodes)
    assert all(n.queued_resource == group for n in nodes)
    check_response(call(ep, "GET", nodes[0].name), "Node")
    check_response(call(ep, "GET", f"{PARENT}/queuedResources"), "ListQueuedResourcesResponse")

    # one slice preempted: the others stay, the request is SUSPENDED (by the service)
    assert admin(ep, "POST", f"/emulator/v1/{nodes[1].name}:preempt")[0] == 200
    assert [client.get_node(name=n.name).state for n in nodes] == [
        State.READY, State.PREEMPTED, State.READY]
    suspended = qr_state(client, group)
    assert suspended.state == QState.SUSPENDED
    assert suspended.state_initiator == tpu_v2.QueuedResourceState.StateInitiator.SERVICE
    client.delete_queued_resource(request={"name": group, "force": True}).result(10)
    for n in nodes:
        with pytest.raises(exceptions.NotFound):
            client.get_node(name=n.name)

    # one node of the request cannot be created: the request fails and none is left
    other = unique("half")
    broken = create_qr(ep, unique("broken"), {"tpu": {"nodeSpec": [
        spec(f"{other}-ok"),
        spec(f"{other}-bad", node={**V6E, "dataDisks": [
            {"sourceDisk": "projects/cap/zones/local-a/disks/nowhere"}]})]}})
    failed = wait_until(lambda: qr_state(client, broken), lambda s: s.state == QState.FAILED)
    assert "disks/nowhere' was not found" in failed.failed_data.error.message
    wait_until(lambda: [n.name for n in client.list_nodes(parent=PARENT) if other in n.name],
               lambda names: names == [])
    client.delete_queued_resource(request={"name": broken, "force": True}).result(10)


def test_multislice_nodes_read_their_place_in_tpu_env(fake_emulator: Any, client: Any,
                                                      unique: Callable[[str], str]) -> None:
    from tpuctl.emulator.metadata import signature

    ep, prefix = fake_emulator.endpoint, unique("slice")
    group = create_qr(ep, unique("env"), {"tpu": {"nodeSpec": [spec(
        count=2, prefix=prefix, node={"acceleratorType": "v4-16",
                                      "runtimeVersion": "tpu-ubuntu2204-base"})]}})
    wait_until(lambda: qr_state(client, group), lambda s: s.state == QState.ACTIVE)
    first = client.get_node(name=f"{PARENT}/nodes/{prefix}-0")
    coordinator = first.network_endpoints[0].ip_address
    for slice_id in range(2):
        key = f"cap.local-a.{prefix}-{slice_id}"
        url = (f"{ep}/metadata/{key}/1/{signature(TOKEN, key, 1)}/computeMetadata/v1/"
               "instance/attributes/tpu-env")
        req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            env = dict(line.split(": ", 1) for line in resp.read().decode().splitlines())
        assert env["MEGASCALE_COORDINATOR_ADDRESS"] == f"'{coordinator}:8080'"
        assert env["MEGASCALE_NUM_SLICES"] == "'2'"
        assert env["MEGASCALE_SLICE_ID"] == f"'{slice_id}'"
        assert env["WORKER_ID"] == "'1'"
    client.delete_queued_resource(request={"name": group, "force": True}).result(10)
