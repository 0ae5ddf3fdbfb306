"""The emulator through google-cloud-tpu's real REST client: what tpuctl's adapter will see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tpu_v2
from google.protobuf import field_mask_pb2

from tests.conftest import tpu_client, wait_until
from tests.emulator.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}

PARENT = "projects/proj/locations/local-a"
State = tpu_v2.Node.State


def _create(client: Any, node_id: str, acc: str = "v6e-8", **kw: Any) -> Any:
    node = tpu_v2.Node(accelerator_type=acc, runtime_version="v2-alpha-tpuv6e", **kw)
    return client.create_node(parent=PARENT, node_id=node_id, node=node)


def test_node_life_cycle(client: Any, fast_polling: Any, unique: Callable[[str], str]) -> None:
    node_id = unique("life")
    name = f"{PARENT}/nodes/{node_id}"
    op = _create(
        client,
        node_id,
        labels={"managed-by": "tpuctl"},
        metadata={"ssh-keys": "alice:ssh-ed25519 AAAAKEY1 alice", "startup": "x"},
        description="first",
        scheduling_config=tpu_v2.SchedulingConfig(spot=True),
    )
    assert op.operation.name.startswith(f"{PARENT}/operations/operation-")
    assert client.get_node(name=name).state == State.CREATING
    node = op.result(timeout=10, polling=fast_polling)
    assert node.name == name and node.state == State.READY
    assert node.health == tpu_v2.Node.Health.HEALTHY
    assert node.accelerator_config.type_ == tpu_v2.AcceleratorConfig.Type.V6E
    assert node.api_version == tpu_v2.Node.ApiVersion.V2
    assert node.id > 0 and node.create_time.year >= 2024
    assert node.scheduling_config.spot
    assert [e.port for e in node.network_endpoints] == [8470]
    assert node.network_endpoints[0].ip_address.startswith("127.")

    # PATCH applies only the masked field
    update = tpu_v2.Node(
        name=name,
        metadata={"ssh-keys": "bob:ssh-ed25519 AAAAKEY2 bob"},
        labels={"ignored": "yes"},
        description="ignored",
    )
    mask = field_mask_pb2.FieldMask(paths=["metadata"])
    updated = client.update_node(node=update, update_mask=mask).result(
        timeout=10, polling=fast_polling
    )
    assert dict(updated.metadata) == {"ssh-keys": "bob:ssh-ed25519 AAAAKEY2 bob"}
    node = client.get_node(name=name)
    assert dict(node.labels) == {"managed-by": "tpuctl"} and node.description == "first"

    stopped = client.stop_node(request={"name": name}).result(timeout=10, polling=fast_polling)
    assert stopped.state == State.STOPPED
    started = client.start_node(request={"name": name}).result(timeout=10, polling=fast_polling)
    assert started.state == State.READY
    assert started.network_endpoints[0].ip_address == node.network_endpoints[0].ip_address

    del_op = client.delete_node(name=name)
    assert client.get_node(name=name).state == State.DELETING
    del_op.result(timeout=10, polling=fast_polling)
    with pytest.raises(exceptions.NotFound):
        client.get_node(name=name)


def test_authorized_keys_follow_current_metadata(
    client: Any, fake_emulator: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    node_id = unique("keys")
    name = f"{PARENT}/nodes/{node_id}"
    keys = "alice:ssh-ed25519 AAAA1 alice@laptop\nbob:ssh-rsa AAAA2 bob\nalice:ssh-ed25519 AAAA3"
    _create(client, node_id, metadata={"ssh-keys": keys}).result(timeout=10, polling=fast_polling)
    key_fn = fake_emulator.host.key_fns[f"proj.local-a.{node_id}"]
    # the keys themselves (type and blob), as a guest agent writes them: comments do not count
    assert key_fn("alice") == ["ssh-ed25519 AAAA1", "ssh-ed25519 AAAA3"]
    assert key_fn("carol") == []
    client.update_node(
        node=tpu_v2.Node(name=name, metadata={"ssh-keys": "carol:ssh-ed25519 AAAA4 c"}),
        update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
    ).result(timeout=10, polling=fast_polling)
    assert key_fn("alice") == [] and key_fn("carol") == ["ssh-ed25519 AAAA4"]
    client.delete_node(name=name).result(timeout=10, polling=fast_polling)
    assert key_fn("carol") == []


def test_list_pagination(client: Any, fast_polling: Any) -> None:
    parent = "projects/pager/locations/local-b"
    ops = [
        client.create_node(
            parent=parent,
            node_id=f"page-{i}",
            node=tpu_v2.Node(accelerator_type="v5litepod-4", runtime_version="v2-alpha-tpuv5-lite"),
        )
        for i in range(3)
    ]
    for op in ops:
        op.result(timeout=10, polling=fast_polling)
    pager = client.list_nodes(request={"parent": parent, "page_size": 1})
    pages = list(pager.pages)
    assert len(pages) == 3 and all(len(p.nodes) == 1 for p in pages)
    assert pages[0].next_page_token and not pages[-1].next_page_token
    names = [n.name.rsplit("/", 1)[1] for n in client.list_nodes(parent=parent)]
    assert names == ["page-0", "page-1", "page-2"]
    with pytest.raises(exceptions.BadRequest):
        list(client.list_nodes(request={"parent": parent, "page_token": "garbage"}))


def test_errors_map_to_client_exceptions(
    client: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_node(name=f"{PARENT}/nodes/nope")
    with pytest.raises(exceptions.NotFound):
        client.delete_node(name=f"{PARENT}/nodes/nope")
    node_id = unique("dup")
    _create(client, node_id).result(timeout=10, polling=fast_polling)
    with pytest.raises(exceptions.Conflict) as conflict:
        _create(client, node_id)
    assert "already exists" in str(conflict.value)
    for bad_id in ("Upper", "1starts-with-digit", "ends-with-", "x" * 64, "under_score"):
        with pytest.raises(exceptions.BadRequest):
            _create(client, bad_id)
    with pytest.raises(exceptions.BadRequest) as bad_acc:
        _create(client, unique("acc"), acc="v6e-7")
    assert "v6e-7" in str(bad_acc.value)
    with pytest.raises(exceptions.BadRequest):
        client.create_node(
            parent=PARENT,
            node_id=unique("rt"),
            node=tpu_v2.Node(accelerator_type="v6e-8", runtime_version="no-such-runtime"),
        )
    with pytest.raises(exceptions.NotFound):  # unknown zones are NOT_FOUND, as on GCP
        list(client.list_nodes(parent="projects/proj/locations/mars-central1-a"))
    client.stop_node(request={"name": f"{PARENT}/nodes/{node_id}"})
    with pytest.raises(exceptions.BadRequest):  # stopping a node that is not READY
        client.stop_node(request={"name": f"{PARENT}/nodes/{node_id}"})


def test_runtime_versions_and_accelerator_types(client: Any) -> None:
    versions = {r.version for r in client.list_runtime_versions(parent=PARENT)}
    assert {
        "v2-alpha-tpuv6e",
        "v2-alpha-tpuv5",
        "v2-alpha-tpuv5-lite",
        "tpu-ubuntu2204-base",
        "tpu-vm-base",
        "tpu-vm-tf-2.16.1-pjrt",
        "tpu-vm-v4-base",
    } <= versions
    rv = client.get_runtime_version(name=f"{PARENT}/runtimeVersions/v2-alpha-tpuv6e")
    assert rv.name == f"{PARENT}/runtimeVersions/v2-alpha-tpuv6e"
    with pytest.raises(exceptions.NotFound):
        client.get_runtime_version(name=f"{PARENT}/runtimeVersions/nope")
    types = {a.type_: a for a in client.list_accelerator_types(parent=PARENT)}
    assert {"v6e-8", "v6e-16", "v4-32", "v5litepod-16", "v5p-8", "v6e-256"} <= set(types)
    v6e = client.get_accelerator_type(name=f"{PARENT}/acceleratorTypes/v6e-16")
    assert v6e.accelerator_configs[0].type_ == tpu_v2.AcceleratorConfig.Type.V6E
    assert v6e.accelerator_configs[0].topology == "4x4"
    locations = client.list_locations(request={"name": "projects/proj"}).locations
    zones = {loc.location_id for loc in locations}
    assert {"us-central1-a", "us-central2-b", "us-east5-b", "europe-west4-a", "local-a"} <= zones


def test_guest_attributes(client: Any, fast_polling: Any, unique: Callable[[str], str]) -> None:
    node_id = unique("guest")
    name = f"{PARENT}/nodes/{node_id}"
    node = _create(client, node_id, acc="v6e-16").result(timeout=10, polling=fast_polling)
    resp = client.get_guest_attributes(request={"name": name})
    assert len(resp.guest_attributes) == 4 == len(node.network_endpoints)
    ports = set()
    for ga in resp.guest_attributes:
        items = {(i.namespace, i.key): i.value for i in ga.query_value.items}
        assert items[("hostkeys", "ssh-ed25519")].startswith("AAAA")
        assert " " not in items[("hostkeys", "ssh-ed25519")]
        ports.add(items[("tpuctl-emulator", "ssh-port")])
    assert len(ports) == 1 and next(iter(ports)).isdigit()
    only = client.get_guest_attributes(
        request={"name": name, "query_path": "hostkeys/", "worker_ids": ["2"]}
    )
    assert len(only.guest_attributes) == 1
    assert [i.namespace for i in only.guest_attributes[0].query_value.items] == ["hostkeys"]


@pytest.mark.parametrize(
    ("acc", "workers"),
    [("v6e-8", 1), ("v6e-16", 4), ("v4-32", 4), ("v5litepod-16", 4), ("v6e-256", 64)],
)
def test_worker_counts(
    client: Any, fast_polling: Any, unique: Callable[[str], str], acc: str, workers: int
) -> None:
    node = client.create_node(
        parent=PARENT,
        node_id=unique("count"),
        node=tpu_v2.Node(accelerator_type=acc, runtime_version="tpu-ubuntu2204-base"),
    ).result(timeout=10, polling=fast_polling)
    ips = [e.ip_address for e in node.network_endpoints]
    assert len(ips) == workers == len(set(ips))
    client.delete_node(name=node.name).result(timeout=10, polling=fast_polling)


def test_queued_resource(client: Any, fast_polling: Any, unique: Callable[[str], str]) -> None:
    qr_id, node_id = unique("qr"), unique("qrnode")
    qr_name = f"{PARENT}/queuedResources/{qr_id}"
    qr = tpu_v2.QueuedResource(
        tpu=tpu_v2.QueuedResource.Tpu(
            node_spec=[
                tpu_v2.QueuedResource.Tpu.NodeSpec(
                    parent=PARENT,
                    node_id=node_id,
                    node=tpu_v2.Node(accelerator_type="v6e-16", runtime_version="v2-alpha-tpuv6e"),
                )
            ]
        ),
        spot=tpu_v2.QueuedResource.Spot(),
    )
    created = client.create_queued_resource(
        parent=PARENT, queued_resource_id=qr_id, queued_resource=qr
    ).result(timeout=10, polling=fast_polling)
    assert created.name == qr_name
    QState = tpu_v2.QueuedResourceState.State
    seen: set[int] = set()

    def get() -> Any:
        got = client.get_queued_resource(name=qr_name)
        seen.add(got.state.state)
        return got

    wait_until(get, lambda q: q.state.state == QState.ACTIVE)
    assert QState.ACTIVE in seen
    node = client.get_node(name=f"{PARENT}/nodes/{node_id}")
    assert node.state == State.READY and len(node.network_endpoints) == 4
    assert node.queued_resource == qr_name and node.scheduling_config.spot
    assert qr_name in [q.name for q in client.list_queued_resources(parent=PARENT)]
    with pytest.raises(exceptions.BadRequest):  # its node still exists
        client.delete_queued_resource(name=qr_name)
    client.delete_queued_resource(request={"name": qr_name, "force": True}).result(
        timeout=10, polling=fast_polling
    )
    with pytest.raises(exceptions.NotFound):
        client.get_queued_resource(name=qr_name)
    with pytest.raises(exceptions.NotFound):
        client.get_node(name=f"{PARENT}/nodes/{node_id}")


def test_operations_get_list_delete(
    client: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    op = _create(client, unique("ops"))
    op.result(timeout=10, polling=fast_polling)
    got = client.get_operation(request={"name": op.operation.name})
    assert got.done and got.name == op.operation.name
    names = [o.name for o in client.list_operations(request={"name": PARENT}).operations]
    assert op.operation.name in names
    client.cancel_operation(request={"name": op.operation.name})
    client.delete_operation(request={"name": op.operation.name})
    with pytest.raises(exceptions.NotFound):
        client.get_operation(request={"name": op.operation.name})


def test_delete_while_creating_aborts_the_create(
    client: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    node_id = unique("abort")
    create = _create(client, node_id)
    delete = client.delete_node(name=f"{PARENT}/nodes/{node_id}")
    with pytest.raises(exceptions.Aborted):
        create.result(timeout=10, polling=fast_polling)
    delete.result(timeout=10, polling=fast_polling)
    with pytest.raises(exceptions.NotFound):
        client.get_node(name=f"{PARENT}/nodes/{node_id}")


def test_preemption_suspends_the_queued_resource(
    client: Any, fake_emulator: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    import json
    import urllib.request

    qr_id, node_id = unique("pre"), unique("prenode")
    qr_name, node_name = f"{PARENT}/queuedResources/{qr_id}", f"{PARENT}/nodes/{node_id}"
    spec = tpu_v2.QueuedResource.Tpu.NodeSpec(
        parent=PARENT,
        node_id=node_id,
        node=tpu_v2.Node(accelerator_type="v5p-8", runtime_version="v2-alpha-tpuv5"),
    )
    client.create_queued_resource(
        parent=PARENT,
        queued_resource_id=qr_id,
        queued_resource=tpu_v2.QueuedResource(
            tpu=tpu_v2.QueuedResource.Tpu(node_spec=[spec]), spot=tpu_v2.QueuedResource.Spot()
        ),
    ).result(timeout=10, polling=fast_polling)
    QState = tpu_v2.QueuedResourceState.State
    wait_until(
        lambda: client.get_queued_resource(name=qr_name), lambda q: q.state.state == QState.ACTIVE
    )

    req = urllib.request.Request(
        f"{fake_emulator.endpoint}/emulator/v1/{node_name}:preempt", data=b"{}", method="POST",
        headers=AUTH)
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback
        assert json.loads(resp.read())["state"] == "PREEMPTED"
    assert client.get_node(name=node_name).state == State.PREEMPTED
    assert client.get_queued_resource(name=qr_name).state.state == QState.SUSPENDED
    status_req = urllib.request.Request(f"{fake_emulator.endpoint}/emulator/v1/status",
                                        headers=AUTH)
    with urllib.request.urlopen(status_req) as resp:
        status = json.loads(resp.read())
    assert any(n["name"] == node_name and n["state"] == "PREEMPTED" for n in status["nodes"])

    # recovery as on GCP: delete the node, reset the queued resource
    client.delete_node(name=node_name).result(timeout=10, polling=fast_polling)
    client.reset_queued_resource(name=qr_name)
    wait_until(
        lambda: client.get_queued_resource(name=qr_name), lambda q: q.state.state == QState.ACTIVE
    )
    assert client.get_node(name=node_name).state == State.READY
    client.delete_queued_resource(request={"name": qr_name, "force": True}).result(
        timeout=10, polling=fast_polling
    )


def test_restart_resumes_transitions_and_keeps_stopped_nodes(
    tmp_path: Any, fast_polling: Any
) -> None:

    from tests.emulator.conftest import FakeWorkerHost
    from tpuctl.emulator.server import run_in_thread

    hosts: list[FakeWorkerHost] = []

    def factory(d: Any, port: int) -> FakeWorkerHost:
        hosts.append(FakeWorkerHost(d, port))
        return hosts[-1]

    def connect(endpoint: str) -> Any:
        return tpu_client(endpoint, tmp_path)

    with run_in_thread(tmp_path, create_delay=0.01, worker_host=factory) as endpoint:
        c = connect(endpoint)
        _create(c, "stopped").result(timeout=10, polling=fast_polling)
        c.stop_node(request={"name": f"{PARENT}/nodes/stopped"}).result(
            timeout=10, polling=fast_polling
        )
        ssh_port = hosts[-1].ssh_port
    with run_in_thread(tmp_path, create_delay=60, worker_host=factory) as endpoint:
        pending = _create(connect(endpoint), "pending").operation.name
    with run_in_thread(tmp_path, create_delay=0.01, worker_host=factory) as endpoint:
        c = connect(endpoint)
        assert hosts[-1].ssh_port == ssh_port  # the previous SSH port is reused when free
        wait_until(lambda: c.get_operation(request={"name": pending}), lambda op: op.done)
        assert c.get_node(name=f"{PARENT}/nodes/pending").state == State.READY
        assert c.get_node(name=f"{PARENT}/nodes/stopped").state == State.STOPPED
        assert list(hosts[-1].running) == ["proj.local-a.pending"]


def test_multislice_queued_resource(
    client: Any, fast_polling: Any, unique: Callable[[str], str]
) -> None:
    qr_id, prefix = unique("ms"), unique("slice")
    qr_name = f"{PARENT}/queuedResources/{qr_id}"
    spec = tpu_v2.QueuedResource.Tpu.NodeSpec(
        parent=PARENT,
        multislice_params=tpu_v2.QueuedResource.Tpu.NodeSpec.MultisliceParams(
            node_count=2, node_id_prefix=prefix
        ),
        node=tpu_v2.Node(accelerator_type="v5litepod-16", runtime_version="v2-alpha-tpuv5-lite"),
    )
    client.create_queued_resource(
        parent=PARENT,
        queued_resource_id=qr_id,
        queued_resource=tpu_v2.QueuedResource(tpu=tpu_v2.QueuedResource.Tpu(node_spec=[spec])),
    ).result(timeout=10, polling=fast_polling)
    active = tpu_v2.QueuedResourceState.State.ACTIVE
    wait_until(lambda: client.get_queued_resource(name=qr_name), lambda q: q.state.state == active)
    for i in range(2):
        node = client.get_node(name=f"{PARENT}/nodes/{prefix}-{i}")
        assert node.state == State.READY and len(node.network_endpoints) == 4
    client.delete_queued_resource(request={"name": qr_name, "force": True}).result(
        timeout=10, polling=fast_polling
    )


@pytest.mark.parametrize("method,path", [
    ("GET", f"/v2/{PARENT}/nodes"),
    ("POST", f"/v2/{PARENT}/nodes?nodeId=intruder"),
    ("GET", "/emulator/v1/status"),
    ("POST", "/emulator/v1/faults"),
    ("DELETE", "/emulator/v1/faults"),
    ("POST", f"/emulator/v1/{PARENT}/nodes/x:preempt"),
])
def test_every_call_needs_the_emulators_token(client: Any, fake_emulator: Any, method: str,
                                              path: str) -> None:
    import json
    import urllib.error
    import urllib.request

    body = b'{"acceleratorType": "v6e-8", "runtimeVersion": "v2-alpha-tpuv6e", ' \
           b'"metadata": {"ssh-keys": "eve:ssh-ed25519 AAAA eve"}}' if method == "POST" else None
    if path.endswith("faults") and method == "POST":
        body = b'{"api-error-rate": 1.0}'
    for headers in ({}, {"Authorization": "Bearer not-the-token"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
        req = urllib.request.Request(fake_emulator.endpoint + path, data=body, method=method,
                                     headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)  # loopback
        assert info.value.code == 401
        assert json.loads(info.value.read())["error"]["status"] == "UNAUTHENTICATED"
    # nothing happened: no node, no fault
    assert "intruder" not in {n.name.rsplit("/", 1)[-1] for n in client.list_nodes(parent=PARENT)}
    req = urllib.request.Request(f"{fake_emulator.endpoint}/emulator/v1/faults", headers=AUTH)
    with urllib.request.urlopen(req, timeout=10) as resp:  # the fixture's own setting only
        assert json.loads(resp.read())["faults"] == {"guest-agent-delay": 0.0}


def test_the_real_client_without_the_token_gets_401(fake_emulator: Any) -> None:
    for token in (None, "wrong"):
        with pytest.raises(exceptions.Unauthorized):
            list(tpu_client(fake_emulator.endpoint, token).list_nodes(parent=PARENT))
