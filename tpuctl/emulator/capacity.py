"""Capacity as the TPU v2 API asks for it, checked as GCP checks it: a node's
`schedulingConfig` (preemptible, spot, reserved: at most one), a queued resource's tier (the
oneof `tier`: `spot {}` or `guaranteed {minDuration?}`), its `queueingPolicy` (the oneof
`start_timing_constraints`: one of validUntilDuration, validUntilTime, validAfterDuration,
validAfterTime, validInterval) and its `reservationName`. Durations and timestamps are
protobuf JSON (`"3600s"`, RFC 3339); the policy becomes a window in epoch seconds.

Texts: the API front end's own for JSON that does not fit the proto (`Invalid value at
'queued_resource' (oneof), oneof field 'tier' is already set. Cannot set 'guaranteed'`);
where GCP's text for a contradiction is not public, an INVALID_ARGUMENT naming both fields
(docs/emulator.md lists these as assumed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tpuctl.emulator.errors import ApiError, invalid_argument

SCHEDULING_FIELDS = ("preemptible", "reserved", "spot")
TIERS = ("spot", "guaranteed")
POLICY_FIELDS = ("validUntilDuration", "validUntilTime", "validAfterDuration",
                 "validAfterTime", "validInterval")
_DURATION_RE = re.compile(r"^(\d{1,12})(?:\.(\d{1,9}))?s$")
_RESERVATION_RE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<zone>[^/]+)/reservations/(?P<id>[^/]+)$")
_RESERVATION_ID_RE = re.compile(r"^(?:-|[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)$")
_SNAKE = {"preemptible": "preemptible", "reserved": "reserved", "spot": "spot",
          "validUntilDuration": "valid_until_duration", "validUntilTime": "valid_until_time",
          "validAfterDuration": "valid_after_duration", "validAfterTime": "valid_after_time",
          "validInterval": "valid_interval", "minDuration": "min_duration",
          "startTime": "start_time", "endTime": "end_time"}


def unknown_field(name: str, where: str) -> ApiError:
    return invalid_argument(
        f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field.")


def oneof_error(where: str, oneof: str, second: str) -> ApiError:
    return invalid_argument(
        f"Invalid value at '{where}' (oneof), oneof field '{oneof}' is already set. "
        f"Cannot set '{second}'")


def bad_value(path: str, kind: str, value: Any) -> ApiError:
    return invalid_argument(f"Invalid value at '{path}' ({kind}), {json.dumps(value)}")


def _object(value: Any, path: str, message: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_value(path, f"type.googleapis.com/google.cloud.tpu.v2.{message}", value)
    return value


# ---------------------------------------------------------------- nodes


def scheduling_config(value: Any, where: str = "node") -> dict[str, bool]:
    """A node's schedulingConfig: booleans only, at most one of them true."""
    path = f"{where}.scheduling_config"
    config = _object(value if value is not None else {}, path, "SchedulingConfig")
    out: dict[str, bool] = {}
    for key, flag in config.items():
        if key not in SCHEDULING_FIELDS:
            raise unknown_field(key, path)
        if not isinstance(flag, bool):
            raise bad_value(f"{path}.{_SNAKE[key]}", "TYPE_BOOL", flag)
        out[key] = flag
    chosen = [k for k in SCHEDULING_FIELDS if out.get(k)]
    if len(chosen) > 1:
        raise invalid_argument(
            f"Invalid value for field '{path}': {chosen[0]} and {chosen[1]} are mutually "
            "exclusive; a node is on-demand, preemptible, spot or reserved")
    return {k: out.get(k, False) for k in SCHEDULING_FIELDS}


def capacity_type(config: dict[str, Any]) -> str:
    """`on-demand`, `preemptible`, `spot` or `reserved`, from a stored schedulingConfig."""
    for key in ("spot", "preemptible", "reserved"):
        if config.get(key):
            return key
    return "on-demand"


# ---------------------------------------------------------------- durations and times


def duration(value: Any, path: str) -> float:
    """Seconds of a protobuf JSON Duration (`"90s"`, `"1.5s"`)."""
    m = _DURATION_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise bad_value(path, "type.googleapis.com/google.protobuf.Duration", value)
    return int(m.group(1)) + (int((m.group(2) or "0").ljust(9, "0")) / 1e9)


def timestamp(value: Any, path: str) -> float:
    """Epoch seconds of a protobuf JSON Timestamp (RFC 3339, `Z` or an offset)."""
    if isinstance(value, str):
        text = value.strip()
        m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$", text)
        if m:
            frac = (m.group(2) or ".0")[:7]  # microseconds are enough here
            zone = "+00:00" if m.group(3) == "Z" else m.group(3)
            try:
                return datetime.fromisoformat(m.group(1) + frac + zone).timestamp()
            except ValueError:
                pass
    raise bad_value(path, "type.googleapis.com/google.protobuf.Timestamp", value)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- queued resources


@dataclass(frozen=True)
class Window:
    """When a queued resource may be provisioned, in epoch seconds (None: no bound)."""

    after: float | None = None
    until: float | None = None

    def waiting(self, now: float) -> bool:
        return self.after is not None and now < self.after

    def expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until


def tier(body: dict[str, Any]) -> str | None:
    """The request's tier (`spot`, `guaranteed`, None), checked: a oneof, each an object
    with only its own fields."""
    found: str | None = None
    for key in body:  # the JSON order decides which one is "already set", as in the API
        if key not in TIERS:
            continue
        if found is not None:
            raise oneof_error("queued_resource", "tier", key)
        found = key
    if found == "spot":
        spot = _object(body["spot"], "queued_resource.spot", "QueuedResource.Spot")
        for key in spot:
            raise unknown_field(key, "queued_resource.spot")
    elif found == "guaranteed":
        guaranteed = _object(body["guaranteed"], "queued_resource.guaranteed",
                             "QueuedResource.Guaranteed")
        for key, value in guaranteed.items():
            if key != "minDuration":
                raise unknown_field(key, "queued_resource.guaranteed")
            duration(value, "queued_resource.guaranteed.min_duration")
    return found


def queueing_policy(value: Any, created: float) -> Window:
    """The policy's window, relative durations counted from `created` (epoch seconds)."""
    where = "queued_resource.queueing_policy"
    policy = _object(value if value is not None else {}, where, "QueuedResource.QueueingPolicy")
    chosen: str | None = None
    for key in policy:
        if key not in POLICY_FIELDS:
            raise unknown_field(key, where)
        if chosen is not None:
            raise oneof_error(where, "start_timing_constraints", key)
        chosen = key
    if chosen is None:
        return Window()
    raw, path = policy[chosen], f"{where}.{_SNAKE[chosen]}"
    if chosen == "validUntilDuration":
        return Window(until=created + duration(raw, path))
    if chosen == "validAfterDuration":
        return Window(after=created + duration(raw, path))
    if chosen == "validUntilTime":
        return Window(until=timestamp(raw, path))
    if chosen == "validAfterTime":
        return Window(after=timestamp(raw, path))
    interval = _object(raw, path, "Interval")
    bounds: dict[str, float] = {}
    for key, text in interval.items():
        if key not in ("startTime", "endTime"):
            raise unknown_field(key, path)
        bounds[key] = timestamp(text, f"{path}.{_SNAKE[key]}")
    start, end = bounds.get("startTime"), bounds.get("endTime")
    if start is not None and end is not None and end <= start:
        raise invalid_argument(
            f"Invalid value for field '{path}': end_time must be after start_time")
    return Window(after=start, until=end)


@dataclass(frozen=True)
class ReservationRef:
    """A queued resource's `reservationName`: a reservation, or `-` for any of the host
    project's in that zone (what gcloud's `--reserved` sends)."""

    project: str
    zone: str
    reservation: str  # "-": any

    @property
    def name(self) -> str:
        return f"projects/{self.project}/locations/{self.zone}/reservations/{self.reservation}"


def reservation_name(value: Any, zone: str) -> ReservationRef | None:
    if value is None or value == "":
        return None
    path = "queued_resource.reservation_name"
    if not isinstance(value, str):
        raise bad_value(path, "TYPE_STRING", value)
    m = _RESERVATION_RE.match(value)
    if m is None or not _RESERVATION_ID_RE.match(m.group("id")):
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. Must be of the form "
            "projects/{project}/locations/{zone}/reservations/{reservation}")
    if m.group("zone") != zone:
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. The reservation must be in the "
            f"queued resource's zone {zone}")
    return ReservationRef(m.group("project"), m.group("zone"), m.group("id"))


def check_node_capacity(tier_name: str | None, reserved: bool, config: dict[str, bool],
                        where: str) -> None:
    """A node spec's schedulingConfig must agree with its queued resource: on the spot tier
    a node is spot (or says nothing), under a reservation it is reserved (or says nothing)."""
    asked = capacity_type(config)
    allowed = ("spot",) if tier_name == "spot" else ("reserved",) if reserved else None
    if asked != "on-demand" and allowed is not None and asked not in allowed:
        owner = "spot tier" if tier_name == "spot" else "reservation_name"
        raise invalid_argument(
            f"Invalid value for field '{where}.scheduling_config': {asked} contradicts the "
            f"queued resource's {owner}")


def check_tier_and_reservation(tier_name: str | None, ref: ReservationRef | None) -> None:
    if tier_name == "spot" and ref is not None:
        raise invalid_argument(
            "Invalid value for field 'queued_resource.reservation_name': the spot tier "
            "cannot use a reservation; remove one of spot and reservation_name")
