"""A queued resource request checked as GCP checks it, before anything is stored: its id,
fields, tier, queueing policy, reservation and `tpu.nodeSpec[]` (each a `nodeId` or
`multisliceParams {nodeCount > 1, nodeIdPrefix?}`: the oneof `name_strategy`), and the nodes
it will create (`PREFIX-0`..`PREFIX-N-1`, the prefix defaulting to the queued resource's id,
as the discovery document says)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tpuctl.emulator import capacity
from tpuctl.emulator.capacity import ReservationRef, Window
from tpuctl.emulator.errors import invalid_argument
from tpuctl.emulator.nodespec import RESOURCE_ID_RE
from tpuctl.emulator.resources import NodePlan, parse_location

INPUT_FIELDS = ("tpu", "spot", "guaranteed", "queueingPolicy", "reservationName")
OUTPUT_FIELDS = frozenset({"name", "createTime", "state"})
SPEC_FIELDS = frozenset({"parent", "node", "nodeId", "multisliceParams"})
MEGASCALE_PORT = 8080  # the MXLA coordinator's port on multislice TPU VMs (JAX's comment)

Planner = Callable[[str, str, dict[str, Any]], NodePlan]  # (parent, node id, node) -> plan


@dataclass
class QueuedPlan:
    """A validated request: its nodes, and what decides when they may be provisioned."""

    tier: str | None
    window: Window
    reservation: ReservationRef | None
    plans: list[NodePlan]
    groups: list[list[str]] = field(default_factory=list)  # multislice node names, in order


def check_request(parent: str, qr_id: str, body: Any) -> None:
    """The request's id and top-level fields."""
    if not qr_id or not RESOURCE_ID_RE.match(qr_id):
        raise invalid_argument(
            f"Invalid queued resource id {qr_id!r}: it must be 1-63 lowercase letters, digits "
            "or hyphens, start with a letter and not end with a hyphen")
    if not isinstance(body, dict):
        raise invalid_argument("the queued resource must be a JSON object")
    for key in body:
        if key not in INPUT_FIELDS and key not in OUTPUT_FIELDS:
            raise capacity.unknown_field(key, "queued_resource")


def plan_queued(parent: str, qr_id: str, body: dict[str, Any], created: float,
                planner: Planner) -> QueuedPlan:
    """Every check of a create request (after `check_request`), and its nodes' plans."""
    project, zone = parse_location(parent)
    tier = capacity.tier(body)
    window = capacity.queueing_policy(body.get("queueingPolicy"), created)
    ref = capacity.reservation_name(body.get("reservationName"), zone)
    capacity.check_tier_and_reservation(tier, ref)
    tpu = body.get("tpu")
    if not isinstance(tpu, dict):
        if tpu is None:
            raise invalid_argument("Invalid value for field 'queued_resource.tpu': required")
        raise capacity.bad_value("queued_resource.tpu",
                                 "type.googleapis.com/google.cloud.tpu.v2.QueuedResource.Tpu", tpu)
    for key in tpu:
        if key != "nodeSpec":
            raise capacity.unknown_field(key, "queued_resource.tpu")
    specs = tpu.get("nodeSpec")
    if not isinstance(specs, list) or not specs:
        raise invalid_argument(
            "Invalid value for field 'queued_resource.tpu.node_spec': at least one node spec "
            "is required")
    out = QueuedPlan(tier, window, ref, [])
    any_reserved = False
    for i, spec in enumerate(specs):
        where = f"queued_resource.tpu.node_spec[{i}]"
        node, ids, multislice = _spec(spec, where, parent, qr_id)
        config = capacity.scheduling_config(node.get("schedulingConfig"), f"{where}.node")
        capacity.check_node_capacity(tier, ref is not None, config, f"{where}.node")
        if tier == "spot":
            config["spot"] = True
        if ref is not None:
            config["reserved"] = True
        any_reserved = any_reserved or config["reserved"]
        node["schedulingConfig"] = config
        names = []
        for node_id in ids:
            plan = planner(parent, node_id, node)
            if multislice:
                plan.resource["multisliceNode"] = True
            out.plans.append(plan)
            names.append(plan.resource["name"])
        if multislice:
            out.groups.append(names)
    if len({p.node_id for p in out.plans}) != len(out.plans):
        raise invalid_argument(
            "Invalid value for field 'queued_resource.tpu.node_spec': two node specs name the "
            "same node")
    if out.reservation is None and any_reserved:  # reserved nodes: any of the project's
        out.reservation = ReservationRef(project, zone, "-")
    return out


def _spec(spec: Any, where: str, parent: str, qr_id: str) -> tuple[dict[str, Any], list[str],
                                                                  bool]:
    """(the node, its node ids, multislice?) of one nodeSpec."""
    if not isinstance(spec, dict):
        raise capacity.bad_value(where, "type.googleapis.com/google.cloud.tpu.v2.QueuedResource."
                                 "Tpu.NodeSpec", spec)
    strategy: str | None = None
    for key in spec:
        if key not in SPEC_FIELDS:
            raise capacity.unknown_field(key, where)
        if key in ("nodeId", "multisliceParams"):
            if strategy is not None:
                raise capacity.oneof_error(where, "name_strategy", key)
            strategy = key
    spec_parent = spec.get("parent") or parent
    if spec_parent != parent:
        raise invalid_argument(
            f"Invalid value for field '{where}.parent': {spec_parent!r} must equal the queued "
            f"resource's parent {parent!r}")
    node = spec.get("node")
    if not isinstance(node, dict):
        raise invalid_argument(f"Invalid value for field '{where}.node': required")
    node = copy.deepcopy(node)
    if strategy == "nodeId":
        return node, [str(spec["nodeId"])], False
    if strategy is None:
        raise invalid_argument(
            f"Invalid value for field '{where}': one of node_id and multislice_params is "
            "required")
    params = spec["multisliceParams"]
    path = f"{where}.multislice_params"
    if not isinstance(params, dict):
        raise capacity.bad_value(path, "type.googleapis.com/google.cloud.tpu.v2.QueuedResource."
                                 "Tpu.NodeSpec.MultisliceParams", params)
    for key in params:
        if key not in ("nodeCount", "nodeIdPrefix"):
            raise capacity.unknown_field(key, path)
    count = params.get("nodeCount")
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int):
        raise capacity.bad_value(f"{path}.node_count", "TYPE_INT32", count)
    if count <= 1:
        raise invalid_argument(
            f"Invalid value for field '{path}.node_count': {count}. It must be greater than 1 "
            "(use node_id for a single node)")
    prefix = params.get("nodeIdPrefix") or qr_id
    if not isinstance(prefix, str):
        raise capacity.bad_value(f"{path}.node_id_prefix", "TYPE_STRING", prefix)
    return node, [f"{prefix}-{i}" for i in range(count)], True


def stored_plan(name: str, resource: dict[str, Any], planner: Planner) -> QueuedPlan:
    """The plan of a stored queued resource (after a restart or a reset)."""
    parent, qr_id = name.split("/queuedResources/", 1)
    created = capacity.timestamp(resource.get("createTime"), "createTime")
    body = {k: resource[k] for k in INPUT_FIELDS if k in resource}
    return plan_queued(parent, qr_id, body, created, planner)
