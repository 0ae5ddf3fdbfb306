"""Capacity as `create`, `up` and recipes ask for it, checked locally, and the TPU v2 REST
fields it becomes, the way gcloud maps its flags:

| tpuctl | node (`tpu-vm create`) | queued resource (`queued-resources create`) |
|---|---|---|
| (default) | on-demand | no tier |
| `--spot` | `schedulingConfig.spot` | tier `spot {}` |
| `--reserved` | `schedulingConfig.reserved` | `reservationName …/reservations/-` (any) |
| `--reservation R` | (queued only) | `reservationName …/reservations/R` |
| `--guaranteed` | (queued only) | tier `guaranteed {}` |
| `--valid-until D` / `--valid-after D` | (queued only) | `queueingPolicy` |

The queued-only options imply `--queued`. Nothing here imports google-cloud.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tpuctl.errors import UsageError
from tpuctl.naming import parse_duration

# a reservation's own id (as Compute names resources), or a full reservation name
_RESERVATION_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_RESERVATION_FULL = re.compile(
    r"^projects/(?P<project>[^/\s]+)/locations/(?P<zone>[^/\s]+)/reservations/"
    r"(?P<id>[^/\s]+)$")


@dataclass(frozen=True)
class Capacity:
    """What kind of capacity a node (or queued resource) asks for."""

    spot: bool = False
    reserved: bool = False  # any reservation of the project (gcloud's --reserved)
    reservation: str = ""  # one reservation: its id or full name
    guaranteed: bool = False
    valid_until_s: float | None = None  # seconds after the request
    valid_after_s: float | None = None
    queued: bool = False  # through a queued resource (also implied by the queued-only ones)

    @property
    def needs_queue(self) -> bool:
        return (self.queued or bool(self.reservation) or self.guaranteed
                or self.valid_until_s is not None or self.valid_after_s is not None)

    @property
    def kind(self) -> str:
        """on-demand, spot or reserved: what `list` and `describe` call the capacity type."""
        if self.spot:
            return "spot"
        if self.reserved or self.reservation:
            return "reserved"
        return "on-demand"


def parse_capacity(*, spot: bool = False, reserved: bool = False, reservation: str | None = None,
                   guaranteed: bool = False, valid_until: str | None = None,
                   valid_after: str | None = None, queued: bool = False) -> Capacity:
    """The flags as one Capacity, or a UsageError naming the bad value and the fix."""
    res = (reservation or "").strip()
    if reservation is not None and not (_RESERVATION_ID.match(res) or (
            (m := _RESERVATION_FULL.match(res)) and _RESERVATION_ID.match(m.group("id")))):
        raise UsageError(f"invalid --reservation {reservation[:80]!r}",
                         hint="give the reservation's name (lowercase letters, digits, hyphens) "
                         "or projects/P/locations/ZONE/reservations/NAME")
    if spot and (reserved or res):
        raise UsageError("--spot cannot be combined with --reserved or --reservation",
                         hint="spot capacity never draws on a reservation: drop one of them")
    if spot and guaranteed:
        raise UsageError("--spot cannot be combined with --guaranteed",
                         hint="a queued resource has one tier: drop --spot or --guaranteed")
    until = _duration(valid_until, "--valid-until")
    after = _duration(valid_after, "--valid-after")
    if until is not None and after is not None and until <= after:
        raise UsageError(f"--valid-until {valid_until} is not after --valid-after {valid_after}",
                         hint="the request must stay valid past the time it may start: "
                         "make --valid-until longer than --valid-after")
    return Capacity(spot=spot, reserved=reserved or bool(res), reservation=res,
                    guaranteed=guaranteed, valid_until_s=until, valid_after_s=after,
                    queued=queued)


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except UsageError:
        raise UsageError(f"invalid {flag} {text[:40]!r}",
                         hint="give a duration from now, e.g. 90s, 30m, 6h or 2d") from None


def scheduling_config(cap: Capacity) -> dict[str, Any]:
    """A node's `schedulingConfig` when created directly (`tpu-vm create`)."""
    if cap.spot:
        return {"spot": True}
    if cap.reserved:
        return {"reserved": True}
    return {}


def reservation_name(cap: Capacity, project: str, zone: str) -> str:
    """The queued resource's `reservationName`: `-` is any of the project's (gcloud's
    `--reserved`); a bare reservation id is in the request's own project and zone."""
    if cap.reservation.startswith("projects/"):
        return cap.reservation
    rid = cap.reservation or ("-" if cap.reserved else "")
    return f"projects/{project}/locations/{zone}/reservations/{rid}" if rid else ""


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def queueing_policy(cap: Capacity, now: float | None = None) -> dict[str, Any]:
    """The oneof `queueingPolicy` holds one constraint: a duration alone, or both ends as a
    `validInterval` of times (gcloud does the same when given both)."""
    if cap.valid_until_s is not None and cap.valid_after_s is not None:
        t = time.time() if now is None else now
        return {"validInterval": {"startTime": _rfc3339(t + cap.valid_after_s),
                                  "endTime": _rfc3339(t + cap.valid_until_s)}}
    if cap.valid_until_s is not None:
        return {"validUntilDuration": f"{int(cap.valid_until_s)}s"}
    if cap.valid_after_s is not None:
        return {"validAfterDuration": f"{int(cap.valid_after_s)}s"}
    return {}


def queued_fields(cap: Capacity, project: str, zone: str,
                  now: float | None = None) -> dict[str, Any]:
    """The queued resource's own capacity fields (REST JSON names; empty ones left out)."""
    out: dict[str, Any] = {}
    if cap.spot:
        out["spot"] = {}
    elif cap.guaranteed:
        out["guaranteed"] = {}
    name = reservation_name(cap, project, zone)
    if name:
        out["reservationName"] = name
    policy = queueing_policy(cap, now)
    if policy:
        out["queueingPolicy"] = policy
    return out


def capacity_of(scheduling: dict[str, Any]) -> str:
    """A node's capacity type from its `schedulingConfig` (REST names)."""
    if scheduling.get("spot") or scheduling.get("preemptible"):
        return "spot" if scheduling.get("spot") else "preemptible"
    return "reserved" if scheduling.get("reserved") else "on-demand"
