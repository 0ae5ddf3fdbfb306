"""The capacity and VM-option fields of create requests, as REST JSON, shared by the real
client (merged into its messages) and `--dry-run` (recorded as they are): one source of
truth for what reaches the API (tests/unit/test_capacity_body.py)."""

from __future__ import annotations

from typing import Any

from tpuctl import capacity, vmoptions
from tpuctl.model import NodeSpec


def merge(message: Any, fields: dict[str, Any]) -> Any:
    """Merge REST JSON fields into a proto-plus message (google-cloud-tpu's), in place."""
    if fields:
        import json

        cls = type(message)
        cls.pb(message).MergeFrom(cls.pb(cls.from_json(json.dumps(fields))))
    return message


def capacity_type(sched: Any) -> str:
    """The capacity type of a node's SchedulingConfig message."""
    return capacity.capacity_of({"spot": sched.spot, "preemptible": sched.preemptible,
                                 "reserved": getattr(sched, "reserved", False)})


def node_fields(spec: NodeSpec, project: str, zone: str, *, queued: bool) -> dict[str, Any]:
    """The node's `schedulingConfig` (direct creates only: in a queued resource the tier and
    the reservation say it, as gcloud sends them), `serviceAccount` and `dataDisks`."""
    out: dict[str, Any] = {}
    if not queued:
        out["schedulingConfig"] = capacity.scheduling_config(spec.effective_capacity)
    out.update(vmoptions.node_fields(spec.vm, project, zone))
    return out


def node_spec_target(spec: NodeSpec) -> dict[str, Any]:
    """A queued resource's node spec names one node (`nodeId`) or, for a multislice group,
    `multisliceParams` (a oneof): nodes PREFIX-0 .. PREFIX-(N-1), PREFIX the group's name."""
    if spec.slices > 1:
        return {"multisliceParams": {"nodeCount": spec.slices, "nodeIdPrefix": spec.name}}
    return {"nodeId": spec.name}


def queued_fields(spec: NodeSpec, project: str, zone: str,
                  now: float | None = None) -> dict[str, Any]:
    """The queued resource's tier, `reservationName` and `queueingPolicy`."""
    return capacity.queued_fields(spec.effective_capacity, project, zone, now)
