"""The TPU v2 REST API over aiohttp, as google-cloud-tpu's REST transport speaks it.

Routing is a small regex table rather than aiohttp patterns because resource names end in
custom methods (`nodes/n:stop`) and every miss must still answer a Google error envelope.
Enums are stored as names; a request carrying `$alt=json;enum-encoding=int` (what the
official client sends) gets proto numbers back, anything else gets names (discovery style).

Deliberate differences from GCP (kept small, each for a reason):
- guest attributes carry `tpuctl-emulator/ssh-port` per worker: emulated workers share one
  non-22 SSH port on distinct 127.x.y.z addresses;
- `networkEndpoints[].accessConfig.externalIp` (only with `enableExternalIps`) is the same
  loopback address as `ipAddress`;
- any project is accepted; unknown zones answer 404 NOT_FOUND for every call under them;
- at most 254 live nodes (one loopback /16 each); beyond that 429 RESOURCE_EXHAUSTED;
- every call needs the emulator's bearer token (emulator/auth.py): its owner's, not any
  local user's;
- `/emulator/v1/status` (GET), `/emulator/v1/<node name>:preempt[?after=SECONDS]`,
  `/emulator/v1/<node name>:dropConnections[?worker=I]` (POST) and `/emulator/v1/faults`
  (GET, POST, DELETE) are admin calls (admin.py), as are reservations and disks
  (capacityapi.py); faults never apply to them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tpuctl.emulator import capacityapi, catalog, gceapi, metadata
from tpuctl.emulator.admin import (
    admin_clear_faults,
    admin_delete_bastion,
    admin_drop_connections,
    admin_get_bastion,
    admin_get_faults,
    admin_iap_instance,
    admin_preempt,
    admin_set_bastion,
    admin_set_faults,
    admin_status,
)
from tpuctl.emulator.calls import INFO_KEY, STATE_KEY, Call, Handler, Reply, page
from tpuctl.emulator.errors import ApiError, invalid_argument, not_found
from tpuctl.emulator.resources import check_location
from tpuctl.emulator.state import EmulatorState

_SEG = r"[^/:]+"
_LOC = rf"projects/{_SEG}/locations/{_SEG}"

# ------------------------------------------------------------------ nodes


async def create_node(call: Call) -> Reply:
    op = call.state.create_node(
        call.group("parent"), call.query.get("nodeId", ""), await call.body()
    )
    return Reply("Operation", op)


async def list_nodes(call: Call) -> Reply:
    return page(call, call.state.list_nodes(call.group("parent")), "nodes", "ListNodesResponse")


async def get_node(call: Call) -> Reply:
    return Reply("Node", call.state.get_node(call.group("name")))


async def update_node(call: Call) -> Reply:
    op = call.state.update_node(
        call.group("name"), await call.body(), call.query.get("updateMask", "")
    )
    return Reply("Operation", op)


async def delete_node(call: Call) -> Reply:
    return Reply("Operation", call.state.delete_node(call.group("name")))


async def stop_node(call: Call) -> Reply:
    await call.body()
    return Reply("Operation", call.state.stop_node(call.group("name")))


async def start_node(call: Call) -> Reply:
    await call.body()
    return Reply("Operation", call.state.start_node(call.group("name")))


async def get_guest_attributes(call: Call) -> Reply:
    body = await call.body()
    worker_ids = body.get("workerIds") or []
    if not isinstance(worker_ids, list):
        raise invalid_argument("workerIds must be a list")
    attrs = call.state.guest_attributes(
        call.group("name"), str(body.get("queryPath") or ""), [str(w) for w in worker_ids]
    )
    return Reply("GetGuestAttributesResponse", {"guestAttributes": attrs} if attrs else {})


async def generate_service_identity(call: Call) -> Reply:
    raise ApiError(501, "UNIMPLEMENTED", "generateServiceIdentity is not emulated")


# ------------------------------------------------------------------ operations


async def list_operations(call: Call) -> Reply:
    ops = call.state.list_operations(call.group("parent"))
    return page(call, ops, "operations", "ListOperationsResponse")


async def get_operation(call: Call) -> Reply:
    return Reply("Operation", call.state.get_operation(call.group("name")))


async def delete_operation(call: Call) -> Reply:
    call.state.delete_operation(call.group("name"))
    return Reply("Empty", {})


async def cancel_operation(call: Call) -> Reply:
    call.state.cancel_operation(call.group("name"))
    return Reply("Empty", {})


# ------------------------------------------------------------------ catalog


def _runtime(parent: str, version: str) -> dict[str, Any]:
    return {"name": f"{parent}/runtimeVersions/{version}", "version": version}


async def list_runtime_versions(call: Call) -> Reply:
    parent = call.group("parent")
    _, zone = check_location(parent)
    items = [_runtime(parent, v) for v in catalog.runtime_versions(zone)]
    return page(call, items, "runtimeVersions", "ListRuntimeVersionsResponse")


async def get_runtime_version(call: Call) -> Reply:
    parent, version = call.group("parent"), call.group("id")
    _, zone = check_location(parent)
    if version not in catalog.runtime_versions(zone):
        raise not_found(f"{parent}/runtimeVersions/{version}")
    return Reply("RuntimeVersion", _runtime(parent, version))


def _accelerator(parent: str, acc: Any) -> dict[str, Any]:
    return {
        "name": f"{parent}/acceleratorTypes/{acc.name}",
        "type": acc.name,
        "acceleratorConfigs": [{"type": acc.generation.api_type, "topology": acc.topology}],
    }


async def list_accelerator_types(call: Call) -> Reply:
    parent = call.group("parent")
    _, zone = check_location(parent)
    items = [_accelerator(parent, a) for a in catalog.accelerator_types(zone)]
    return page(call, items, "acceleratorTypes", "ListAcceleratorTypesResponse")


async def get_accelerator_type(call: Call) -> Reply:
    parent, name = call.group("parent"), call.group("id")
    _, zone = check_location(parent)
    acc = catalog.find_accelerator(zone, name)
    if acc is None:
        raise not_found(f"{parent}/acceleratorTypes/{name}")
    return Reply("AcceleratorType", _accelerator(parent, acc))


def _location(project: str, zone: str) -> dict[str, Any]:
    return {"name": f"projects/{project}/locations/{zone}", "locationId": zone}


async def list_locations(call: Call) -> Reply:
    project = call.group("project")
    items = [_location(project, z) for z in catalog.ZONES]
    return page(call, items, "locations", "ListLocationsResponse")


async def get_location(call: Call) -> Reply:
    project, zone = check_location(call.group("name"))
    return Reply("Location", _location(project, zone))


# ------------------------------------------------------------------ queued resources


async def create_queued_resource(call: Call) -> Reply:
    op = call.state.create_queued_resource(
        call.group("parent"), call.query.get("queuedResourceId", ""), await call.body()
    )
    return Reply("Operation", op)


async def list_queued_resources(call: Call) -> Reply:
    items = call.state.list_queued_resources(call.group("parent"))
    return page(call, items, "queuedResources", "ListQueuedResourcesResponse")


async def get_queued_resource(call: Call) -> Reply:
    return Reply("QueuedResource", call.state.get_queued_resource(call.group("name")))


async def delete_queued_resource(call: Call) -> Reply:
    force = call.query.get("force", "").lower() in ("1", "true")
    return Reply("Operation", call.state.delete_queued_resource(call.group("name"), force))


async def reset_queued_resource(call: Call) -> Reply:
    await call.body()
    return Reply("Operation", call.state.reset_queued_resource(call.group("name")))


_NODE = rf"(?P<name>{_LOC}/nodes/{_SEG})"
_OP = rf"(?P<name>{_LOC}/operations/{_SEG})"
_QR = rf"(?P<name>{_LOC}/queuedResources/{_SEG})"
_PARENT = rf"(?P<parent>{_LOC})"

ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (m, re.compile(rf"^{p}$"), h)
    for m, p, h in [
        ("GET", rf"/v2/projects/(?P<project>{_SEG})/locations", list_locations),
        ("GET", rf"/v2/(?P<name>{_LOC})", get_location),
        ("POST", rf"/v2/{_PARENT}:generateServiceIdentity", generate_service_identity),
        ("POST", rf"/v2/{_PARENT}/nodes", create_node),
        ("GET", rf"/v2/{_PARENT}/nodes", list_nodes),
        ("GET", rf"/v2/{_NODE}", get_node),
        ("PATCH", rf"/v2/{_NODE}", update_node),
        ("DELETE", rf"/v2/{_NODE}", delete_node),
        ("POST", rf"/v2/{_NODE}:stop", stop_node),
        ("POST", rf"/v2/{_NODE}:start", start_node),
        ("POST", rf"/v2/{_NODE}:getGuestAttributes", get_guest_attributes),
        ("GET", rf"/v2/{_PARENT}/operations", list_operations),
        ("GET", rf"/v2/{_OP}", get_operation),
        ("DELETE", rf"/v2/{_OP}", delete_operation),
        ("POST", rf"/v2/{_OP}:cancel", cancel_operation),
        ("GET", rf"/v2/{_PARENT}/runtimeVersions", list_runtime_versions),
        ("GET", rf"/v2/{_PARENT}/runtimeVersions/(?P<id>{_SEG})", get_runtime_version),
        ("GET", rf"/v2/{_PARENT}/acceleratorTypes", list_accelerator_types),
        ("GET", rf"/v2/{_PARENT}/acceleratorTypes/(?P<id>{_SEG})", get_accelerator_type),
        ("POST", rf"/v2/{_PARENT}/queuedResources", create_queued_resource),
        ("GET", rf"/v2/{_PARENT}/queuedResources", list_queued_resources),
        ("GET", rf"/v2/{_QR}", get_queued_resource),
        ("DELETE", rf"/v2/{_QR}", delete_queued_resource),
        ("POST", rf"/v2/{_QR}:reset", reset_queued_resource),
        ("GET", r"/emulator/v1/status", admin_status),
        ("POST", rf"/emulator/v1/{_NODE}:preempt", admin_preempt),
        ("POST", rf"/emulator/v1/{_NODE}:dropConnections", admin_drop_connections),
        ("GET", r"/emulator/v1/faults", admin_get_faults),
        ("POST", r"/emulator/v1/faults", admin_set_faults),
        ("DELETE", r"/emulator/v1/faults", admin_clear_faults),
        ("GET", r"/emulator/v1/bastion", admin_get_bastion),
        ("POST", r"/emulator/v1/bastion", admin_set_bastion),
        ("DELETE", r"/emulator/v1/bastion", admin_delete_bastion),
        ("GET", rf"/emulator/v1/iap/(?P<project>{_SEG})/(?P<zone>{_SEG})/(?P<instance>{_SEG})",
         admin_iap_instance),
        *gceapi.ROUTES,
        *capacityapi.ROUTES,
    ]
]

# Paths of the Google APIs (not admin calls) and the service each stands for: faults apply.
_SERVICES = (("/v2/", "tpu.googleapis.com"), ("/v1/", "oslogin.googleapis.com"),
             ("/compute/v1/", "compute.googleapis.com"))


def _service(path: str) -> tuple[str, str | None] | None:
    """(service, project) of an API path, None for admin calls and unknown paths."""
    for prefix, service in _SERVICES:
        if path.startswith(prefix):
            rest = path[len(prefix):].split("/")
            project = rest[1] if len(rest) > 1 and rest[0] == "projects" else None
            return service, project
    return None


def _wants_int_enums(request: web.Request) -> bool:
    alt = request.query.get("$alt", "") + ";" + request.query.get("alt", "")
    return "enum-encoding=int" in alt


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route one request; every failure becomes a Google error envelope."""
    state = request.app[STATE_KEY]
    path = request.path
    try:
        api = _service(path)
        if api is not None:
            # before routing, reading the body or touching state: a failed call has no effect
            injected = state.faults.api_error(api[1], api[0])
            if injected is not None:
                raise ApiError(
                    injected.http_code, injected.status, injected.message, injected.details
                )
        path_matched = False
        for method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            path_matched = True
            if method != request.method:
                continue
            reply = await handler(Call(request, match, state))
            body = reply.body
            if reply.message:
                body = catalog.encode_enums(reply.message, body, _wants_int_enums(request))
            return _json(200, body)
        if path_matched:
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {path}")
        raise ApiError(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")
    except ApiError as e:
        return _json(e.http_code, e.envelope())


def create_app(state: EmulatorState, info: dict[str, Any] | None = None, *,
               token: str) -> web.Application:
    """The aiohttp app serving the TPU v2 API (and `/emulator/v1/...` admin calls), every
    call authenticated with `token` (emulator/auth.py)."""
    from tpuctl.emulator.auth import require_token

    app = web.Application(middlewares=[require_token(token)])
    app[STATE_KEY] = state
    app[INFO_KEY] = dict(info or {})
    app.router.add_route("GET", "/metadata/{tail:.*}", metadata.handle)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
