"""Raw emulator JSON against the official discovery document and google-cloud-tpu's protos.

Every field must exist in the discovery schema (following $ref), enum names must be allowed
values, enum numbers must be real proto numbers, and every body must parse *strictly* into
the client's proto types (the operations client rejects unknown fields).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import googleapiclient
import pytest
from google.cloud import tpu_v2
from google.cloud.location import locations_pb2
from google.longrunning import operations_pb2
from google.protobuf import json_format

from tests.emulator.conftest import TOKEN
from tpuctl.emulator import catalog

DISCOVERY = json.loads(
    (Path(googleapiclient.__file__).parent / "discovery_cache/documents/tpu.v2.json").read_text()
)
SCHEMAS: dict[str, Any] = DISCOVERY["schemas"]
PARENT = "projects/schema/locations/us-central2-b"
INT_ENUMS = "%24alt=json%3Benum-encoding%3Dint"

PROTO_ENUMS: dict[tuple[str, str], Any] = {
    ("Node", "state"): tpu_v2.Node.State,
    ("Node", "health"): tpu_v2.Node.Health,
    ("Node", "apiVersion"): tpu_v2.Node.ApiVersion,
    ("AcceleratorConfig", "type"): tpu_v2.AcceleratorConfig.Type,
    ("AttachedDisk", "mode"): tpu_v2.AttachedDisk.DiskMode,
    ("QueuedResourceState", "state"): tpu_v2.QueuedResourceState.State,
    ("QueuedResourceState", "stateInitiator"): tpu_v2.QueuedResourceState.StateInitiator,
}
ANY_SCHEMAS = {
    "type.googleapis.com/google.cloud.tpu.v2.OperationMetadata": "OperationMetadata",
    "type.googleapis.com/google.cloud.tpu.v2.Node": "Node",
    "type.googleapis.com/google.cloud.tpu.v2.QueuedResource": "QueuedResource",
    "type.googleapis.com/google.protobuf.Empty": "Empty",
}
# Response messages for strict proto parsing (proto-plus classes expose `.pb()`).
PROTO_TYPES: dict[str, Any] = {
    "Node": tpu_v2.Node.pb(),
    "ListNodesResponse": tpu_v2.ListNodesResponse.pb(),
    "QueuedResource": tpu_v2.QueuedResource.pb(),
    "ListQueuedResourcesResponse": tpu_v2.ListQueuedResourcesResponse.pb(),
    "RuntimeVersion": tpu_v2.RuntimeVersion.pb(),
    "ListRuntimeVersionsResponse": tpu_v2.ListRuntimeVersionsResponse.pb(),
    "AcceleratorType": tpu_v2.AcceleratorType.pb(),
    "ListAcceleratorTypesResponse": tpu_v2.ListAcceleratorTypesResponse.pb(),
    "GetGuestAttributesResponse": tpu_v2.GetGuestAttributesResponse.pb(),
    "Operation": operations_pb2.Operation,
    "ListOperationsResponse": operations_pb2.ListOperationsResponse,
    "Location": locations_pb2.Location,
    "ListLocationsResponse": locations_pb2.ListLocationsResponse,
}


def check(value: Any, schema: dict[str, Any], path: str, owner: str = "", prop: str = "",
          schemas: dict[str, Any] | None = None) -> None:
    """Recursively check `value` against a discovery schema; raise AssertionError with a path.
    `schemas`: the document's schemas ($ref targets), the TPU API's by default."""
    schemas = SCHEMAS if schemas is None else schemas
    if "$ref" in schema:
        name = schema["$ref"]
        check(value, schemas[name], path, name, schemas=schemas)
        return
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        assert isinstance(value, dict), f"{path}: expected object, got {value!r}"
        for key, sub in value.items():
            assert key in schema["properties"], f"{path}.{key}: not in schema {owner}"
            check(sub, schema["properties"][key], f"{path}.{key}", owner, key, schemas)
    elif kind == "object" and "additionalProperties" in schema:
        assert isinstance(value, dict), f"{path}: expected object"
        extra = schema["additionalProperties"]
        if extra.get("type") == "any":  # google.protobuf.Any: follow @type
            type_url = value.get("@type")
            assert type_url in ANY_SCHEMAS, f"{path}: unexpected @type {type_url!r}"
            body = {k: v for k, v in value.items() if k != "@type"}
            check(body, SCHEMAS[ANY_SCHEMAS[type_url]], path, ANY_SCHEMAS[type_url])
        else:
            for key, sub in value.items():
                check(sub, extra, f"{path}[{key}]", owner, schemas=schemas)
    elif kind == "object":  # e.g. Empty
        assert value == {}, f"{path}: expected empty object"
    elif kind == "array":
        assert isinstance(value, list), f"{path}: expected array"
        for i, item in enumerate(value):
            check(item, schema["items"], f"{path}[{i}]", owner, schemas=schemas)
    elif "enum" in schema:
        if isinstance(value, int):
            proto_enum = PROTO_ENUMS[(owner, prop)]
            names = {m.value: m.name for m in proto_enum}
            assert value in names, f"{path}: {value} is not a {proto_enum.__qualname__} number"
            assert names[value] in schema["enum"], f"{path}: {names[value]} not in discovery"
        else:
            assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    elif kind == "string":
        assert isinstance(value, str), f"{path}: expected string, got {value!r}"
        if schema.get("format") in ("int64", "uint64"):
            assert value.lstrip("-").isdigit(), f"{path}: expected an int64 string"
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected int"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: expected bool"


def check_response(body: Any, message: str) -> None:
    check(body, SCHEMAS[message], message, message)
    json_format.Parse(json.dumps(body), PROTO_TYPES[message](), ignore_unknown_fields=False)


def call(endpoint: str, method: str, path: str, body: Any = None, ints: bool = True) -> Any:
    sep = "&" if "?" in path else "?"
    url = f"{endpoint}/v2/{path}" + (f"{sep}{INT_ENUMS}" if ints else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # loopback only
        return json.loads(resp.read())


def wait_op(endpoint: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        op = call(endpoint, "GET", name, ints=False)  # the operations client sends no $alt
        if op.get("done"):
            return op  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"operation {name} not done")


def test_catalog_enum_numbers_match_the_client_protos() -> None:
    pairs = [
        (catalog.NODE_STATE, tpu_v2.Node.State),
        (catalog.NODE_HEALTH, tpu_v2.Node.Health),
        (catalog.API_VERSION, tpu_v2.Node.ApiVersion),
        (catalog.ACCELERATOR_CONFIG_TYPE, tpu_v2.AcceleratorConfig.Type),
        (catalog.QUEUED_RESOURCE_STATE, tpu_v2.QueuedResourceState.State),
        (catalog.QUEUED_RESOURCE_STATE_INITIATOR, tpu_v2.QueuedResourceState.StateInitiator),
        (catalog.DISK_MODE, tpu_v2.AttachedDisk.DiskMode),
    ]
    for table, proto_enum in pairs:
        assert dict(table) == {m.name: m.value for m in proto_enum}


def test_every_generation_maps_to_a_proto_accelerator_type() -> None:
    for acc in catalog.accelerator_types("local-a"):
        assert acc.generation.api_type in catalog.ACCELERATOR_CONFIG_TYPE


@pytest.mark.parametrize("ints", [True, False], ids=["enum-int", "enum-name"])
def test_responses_conform_to_discovery_and_protos(fake_emulator: Any, ints: bool) -> None:
    ep = fake_emulator.endpoint
    suffix = "i" if ints else "n"
    node_id, ext_id, qr_id = f"schema-{suffix}", f"schema-ext-{suffix}", f"schema-qr-{suffix}"
    node = f"{PARENT}/nodes/{node_id}"

    # enums accepted both as numbers and as names on input
    op = call(
        ep,
        "POST",
        f"{PARENT}/nodes?nodeId={node_id}",
        {
            "acceleratorConfig": {"type": 11, "topology": "4x4"},
            "runtimeVersion": "v2-alpha-tpuv6e",
            "labels": {"a": "b"},
            "metadata": {"ssh-keys": "u:ssh-ed25519 AAAA u"},
            "schedulingConfig": {"preemptible": True},
        },
        ints=ints,
    )
    check_response(op, "Operation")
    assert op["done"] is False and "response" not in op
    op2 = call(
        ep,
        "POST",
        f"{PARENT}/nodes?nodeId={ext_id}",
        {
            "acceleratorConfig": {"type": "V5LITE_POD", "topology": "2x2"},
            "runtimeVersion": "v2-alpha-tpuv5-lite",
            "networkConfig": {"enableExternalIps": True, "network": "default",
                              "canIpForward": True, "queueCount": 2},
            "tags": ["tpu-vm", "allow-ssh"],
        },
        ints=ints,
    )
    done = wait_op(ep, op["name"])
    check_response(done, "Operation")
    assert done["response"]["@type"].endswith("tpu.v2.Node")
    check_response(wait_op(ep, op2["name"]), "Operation")

    got = call(ep, "GET", node, ints=ints)
    check_response(got, "Node")
    assert got["acceleratorType"] == "v6e-16" and len(got["networkEndpoints"]) == 4
    assert got["state"] == (2 if ints else "READY")
    assert got["acceleratorConfig"]["type"] == (11 if ints else "V6E")
    ext = call(ep, "GET", f"{PARENT}/nodes/{ext_id}", ints=ints)
    check_response(ext, "Node")
    assert ext["acceleratorType"] == "v5litepod-4"
    assert ext["networkEndpoints"][0]["accessConfig"]["externalIp"]
    assert ext["networkConfig"] == {
        "network": "projects/schema/global/networks/default",
        "subnetwork": "projects/schema/regions/us-central2/subnetworks/default",
        "enableExternalIps": True, "canIpForward": True, "queueCount": 2}
    assert ext["tags"] == ["tpu-vm", "allow-ssh"]

    check_response(call(ep, "GET", f"{PARENT}/nodes?pageSize=1", ints=ints), "ListNodesResponse")
    check_response(
        call(ep, "POST", f"{node}:getGuestAttributes", {}, ints=ints),
        "GetGuestAttributesResponse",
    )
    upd = call(ep, "PATCH", f"{node}?updateMask=labels", {"labels": {"c": "d"}}, ints=ints)
    check_response(upd, "Operation")
    check_response(wait_op(ep, upd["name"]), "Operation")
    check_response(call(ep, "GET", f"{PARENT}/operations", ints=ints), "ListOperationsResponse")
    for path, message in [
        (f"{PARENT}/runtimeVersions", "ListRuntimeVersionsResponse"),
        (f"{PARENT}/runtimeVersions/tpu-vm-base", "RuntimeVersion"),
        (f"{PARENT}/acceleratorTypes", "ListAcceleratorTypesResponse"),
        (f"{PARENT}/acceleratorTypes/v5p-8", "AcceleratorType"),
        ("projects/schema/locations", "ListLocationsResponse"),
        (PARENT, "Location"),
    ]:
        check_response(call(ep, "GET", path, ints=ints), message)

    qr_op = call(
        ep,
        "POST",
        f"{PARENT}/queuedResources?queuedResourceId={qr_id}",
        {
            "tpu": {
                "nodeSpec": [
                    {
                        "parent": PARENT,
                        "nodeId": f"{qr_id}-node",
                        "node": {"acceleratorType": "v4-32", "runtimeVersion": "tpu-vm-v4-base"},
                    }
                ]
            },
            "guaranteed": {},
        },
        ints=ints,
    )
    check_response(qr_op, "Operation")
    check_response(wait_op(ep, qr_op["name"]), "Operation")
    qr = call(ep, "GET", f"{PARENT}/queuedResources/{qr_id}", ints=ints)
    check_response(qr, "QueuedResource")
    check_response(
        call(ep, "GET", f"{PARENT}/queuedResources", ints=ints), "ListQueuedResourcesResponse"
    )

    stop = call(ep, "POST", f"{node}:stop", {}, ints=ints)
    check_response(wait_op(ep, stop["name"]), "Operation")
    delete = call(ep, "DELETE", node, ints=ints)
    check_response(delete, "Operation")
    deleted = wait_op(ep, delete["name"])
    check_response(deleted, "Operation")
    assert deleted["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}


def test_error_envelopes(fake_emulator: Any) -> None:
    ep = fake_emulator.endpoint
    cases = [
        ("GET", f"{PARENT}/nodes/missing", None, 404, "NOT_FOUND"),
        ("GET", "projects/x/locations/nowhere-1a/nodes", None, 404, "NOT_FOUND"),
        ("POST", f"{PARENT}/nodes?nodeId=Bad_Id", {"acceleratorType": "v6e-8"}, 400, None),
        (
            "POST",
            f"{PARENT}/nodes?nodeId=ok-id",
            {"acceleratorType": "v6e-8", "runtimeVersion": "v2-alpha-tpuv6e", "bogus": 1},
            400,
            "INVALID_ARGUMENT",
        ),
        ("GET", "no/such/path", None, 404, "NOT_FOUND"),
    ]
    for method, path, body, code, status in cases:
        with pytest.raises(urllib.error.HTTPError) as err:
            call(ep, method, path, body)
        assert err.value.code == code
        envelope = json.loads(err.value.read())
        assert set(envelope) == {"error"}
        assert envelope["error"]["code"] == code
        assert envelope["error"]["message"]
        assert envelope["error"]["status"] == (status or "INVALID_ARGUMENT")
