"""Fault injection: which failures the emulator produces on purpose, and when.

Faults are set by `tpuctl emulator serve --fault KEY=VALUE` (repeatable; also `start`) and at
run time by the admin endpoint `/emulator/v1/faults` (GET reads, POST merges, DELETE clears).
Every random decision comes from one `random.Random` per fault kind, seeded from the
emulator's seed, so a given seed and request order always yield the same failures.

Keys (validated strictly; an unknown key or a bad value raises `FaultError` naming it):
- `api-error-rate=R` (0..1): that fraction of `/v2/` requests answer 429, 503 or 500, decided
  before the request has any effect;
- `stockout-zones=Z1,Z2`: creates there fail with RESOURCE_EXHAUSTED, queued resources wait;
- `stockout-mode=operation|request`: a stockout fails the create operation (as GCP does) or
  the create call itself (HTTP 429);
- `create-delay=S`: how long a node stays CREATING (overrides `--create-delay`);
- `ssh-refuse-rate=R`: that fraction of SSH connections is closed before the handshake;
- `ssh-drop-rate=R`: that fraction of SSH sessions is cut while its command runs, after a
  random delay up to `ssh-drop-after=S` (default 1 s);
- `unreachable-workers=NODE:I,NODE:I`: those workers' SSH listeners are closed.
"""

from __future__ import annotations

import math
import random
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tpuctl.emulator import catalog

API_ERROR_RATE = "api-error-rate"
STOCKOUT_ZONES = "stockout-zones"
STOCKOUT_MODE = "stockout-mode"
CREATE_DELAY = "create-delay"
SSH_REFUSE_RATE = "ssh-refuse-rate"
SSH_DROP_RATE = "ssh-drop-rate"
SSH_DROP_AFTER = "ssh-drop-after"
UNREACHABLE_WORKERS = "unreachable-workers"

STOCKOUT_MODES = ("operation", "request")
DEFAULT_SSH_DROP_AFTER = 1.0
MIN_SSH_DROP_DELAY = 0.05

# Keys whose values are lists: repeated `--fault KEY=...` options accumulate.
LIST_KEYS = frozenset({STOCKOUT_ZONES, UNREACHABLE_WORKERS})

# Node ids as GCP enforces them (also accepted: a full node name).
_NODE_ID = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NODE_RE = re.compile(rf"^(?:projects/[^/:]+/locations/[^/:]+/nodes/)?{_NODE_ID}$")

# What API requests fail with: (HTTP code, status, message). The 429 is a rate limit, never
# capacity: its text avoids every word tpuctl's classifier reads as capacity or quota.
RATE_LIMIT_MESSAGE = (
    "Rate limit exceeded for 'Requests per minute' of service 'tpu.googleapis.com' for "
    "consumer '{consumer}'. Retry with exponential backoff."
)
UNAVAILABLE_MESSAGE = "The service is currently unavailable."
INTERNAL_MESSAGE = "Internal error encountered."
STOCKOUT_MESSAGE = (
    'There is no more capacity in the zone "{zone}"; you can try in another zone where Cloud '
    "TPU Nodes are offered (see https://cloud.google.com/tpu/docs/regions) [EID: 0x{eid}]"
)
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


class FaultError(ValueError):
    """A fault spec that is not valid; the message names the key (and value)."""


@dataclass(frozen=True)
class InjectedError:
    """An API error the faults decided on: a Google error envelope's parts."""

    http_code: int
    status: str
    message: str
    details: tuple[dict[str, Any], ...] = ()


def _rate(key: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"fault {key}: {value!r} is not a number (expected 0..1)") from None
    if isinstance(value, bool) or math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise FaultError(f"fault {key}: {value!r} is out of range (expected 0..1)")
    return rate


def _seconds(key: str, value: Any, *, positive: bool = False) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"fault {key}: {value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0 or (
        positive and seconds == 0
    ):
        raise FaultError(
            f"fault {key}: {value!r} must be a number of seconds "
            + ("> 0" if positive else ">= 0")
        )
    return seconds


def _items(key: str, value: Any) -> list[str]:
    """A comma list (string) or a JSON list of strings, blanks dropped."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list | tuple):
        parts = []
        for v in value:
            if not isinstance(v, str):
                raise FaultError(f"fault {key}: {v!r} is not a string")
            parts.extend(v.split(","))
    else:
        raise FaultError(f"fault {key}: expected a comma-separated list, got {value!r}")
    return [p.strip() for p in parts if p.strip()]


def _zones(key: str, value: Any) -> list[str]:
    zones = _items(key, value)
    for zone in zones:
        if not catalog.is_known_zone(zone):
            raise FaultError(
                f"fault {key}: unknown zone {zone!r} (known: {', '.join(catalog.ZONES)})"
            )
    return sorted(set(zones))


def _workers(key: str, value: Any) -> list[str]:
    out = []
    for item in _items(key, value):
        node, sep, index = item.rpartition(":")
        if not sep or not _NODE_RE.match(node) or not index.isdigit():
            raise FaultError(
                f"fault {key}: {item!r} is not NODE:WORKER (e.g. my-node:2, worker >= 0)"
            )
        out.append(f"{node}:{int(index)}")
    return sorted(set(out), key=lambda s: (s.rpartition(":")[0], int(s.rpartition(":")[2])))


def _mode(key: str, value: Any) -> str:
    if value not in STOCKOUT_MODES:
        raise FaultError(f"fault {key}: {value!r} must be one of {', '.join(STOCKOUT_MODES)}")
    return str(value)


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    API_ERROR_RATE: _rate,
    STOCKOUT_ZONES: _zones,
    STOCKOUT_MODE: _mode,
    CREATE_DELAY: _seconds,
    SSH_REFUSE_RATE: _rate,
    SSH_DROP_RATE: _rate,
    SSH_DROP_AFTER: lambda k, v: _seconds(k, v, positive=True),
    UNREACHABLE_WORKERS: _workers,
}
KEYS: tuple[str, ...] = tuple(_VALIDATORS)


def validate(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical values for a (JSON) mapping of faults; `None` stays `None` (= clear it)."""
    if not isinstance(mapping, Mapping):
        raise FaultError("faults must be a JSON object of KEY: VALUE")
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        validator = _VALIDATORS.get(key)
        if validator is None:
            raise FaultError(f"unknown fault {key!r} (known: {', '.join(KEYS)})")
        out[key] = None if value is None else validator(key, value)
    return out


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """`["api-error-rate=0.2", "unreachable-workers=n:1", ...]` -> canonical values.

    List keys given twice accumulate; any other key given twice is an error."""
    raw: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FaultError(f"fault {item!r} is not KEY=VALUE (keys: {', '.join(KEYS)})")
        if key not in _VALIDATORS:
            raise FaultError(f"unknown fault {key!r} (known: {', '.join(KEYS)})")
        value = value.strip()
        if key in LIST_KEYS:
            raw.setdefault(key, []).append(value)
        elif key in raw:
            raise FaultError(f"fault {key} is given twice")
        else:
            raw[key] = value
    return validate(raw)


def parse_seed(value: Any) -> int:
    if isinstance(value, bool):
        raise FaultError(f"seed: {value!r} is not an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FaultError(f"seed: {value!r} is not an integer") from None


def _node_matches(spec: str, node_name: str) -> bool:
    """`my-node` matches that id in any project and zone; a full name matches exactly."""
    if "/" in spec:
        return spec == node_name
    return node_name.rsplit("/", 1)[-1] == spec


class Faults:
    """The active faults and the random streams that decide when they strike."""

    def __init__(self, values: Mapping[str, Any] | None = None, seed: int | None = None) -> None:
        self._values: dict[str, Any] = {}
        self.reseed(seed)
        if values:
            self.update(values)

    # -- configuration -------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self._seed

    def reseed(self, seed: int | None) -> None:
        """Restart every random stream (a random seed when None: it is shown by `to_json`)."""
        self._seed = secrets.randbelow(2**31) if seed is None else int(seed)
        # one stream per fault kind: decisions of one kind never shift those of another
        self._api = random.Random(f"{self._seed}:api")
        self._refuse = random.Random(f"{self._seed}:ssh-refuse")
        self._drop = random.Random(f"{self._seed}:ssh-drop")
        self._eid = random.Random(f"{self._seed}:eid")

    def update(self, values: Mapping[str, Any]) -> None:
        """Merge faults (validated here too); a `None` value clears that key."""
        checked = validate(values)
        for key, value in checked.items():
            if value is None or value == [] or (key.endswith("-rate") and value == 0.0):
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def clear(self) -> None:
        self._values.clear()

    def values(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._values.items()}

    def to_json(self) -> dict[str, Any]:
        return {"seed": self._seed, "faults": self.values()}

    # -- decisions -----------------------------------------------------------------------------
    def api_error(self, project: str | None = None) -> InjectedError | None:
        """Should this API request fail, and how? (Draws only while the rate is set.)"""
        rate = float(self._values.get(API_ERROR_RATE, 0.0))
        if rate <= 0.0 or self._api.random() >= rate:
            return None
        kind = self._api.choice((429, 503, 500))
        if kind == 429:
            consumer = f"projects/{project}" if project else "unknown"
            info = {
                "@type": ERROR_INFO_TYPE,
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {"service": "tpu.googleapis.com", "consumer": consumer},
            }
            return InjectedError(
                429, "RESOURCE_EXHAUSTED", RATE_LIMIT_MESSAGE.format(consumer=consumer), (info,)
            )
        if kind == 503:
            return InjectedError(503, "UNAVAILABLE", UNAVAILABLE_MESSAGE)
        return InjectedError(500, "INTERNAL", INTERNAL_MESSAGE)

    def stocked_out(self, zone: str) -> bool:
        return zone in self._values.get(STOCKOUT_ZONES, ())

    @property
    def stockout_mode(self) -> str:
        return str(self._values.get(STOCKOUT_MODE, "operation"))

    def stockout_message(self, zone: str) -> str:
        return STOCKOUT_MESSAGE.format(zone=zone, eid=f"{self._eid.getrandbits(60):x}")

    def create_delay(self, default: float) -> float:
        value = self._values.get(CREATE_DELAY)
        return default if value is None else float(value)

    def refuse_ssh(self) -> bool:
        """Should this incoming SSH connection be closed before the handshake?"""
        rate = float(self._values.get(SSH_REFUSE_RATE, 0.0))
        return rate > 0.0 and self._refuse.random() < rate

    def ssh_drop_delay(self) -> float | None:
        """Seconds after which this SSH session's connection is cut, or None to leave it."""
        rate = float(self._values.get(SSH_DROP_RATE, 0.0))
        if rate <= 0.0 or self._drop.random() >= rate:
            return None
        longest = float(self._values.get(SSH_DROP_AFTER, DEFAULT_SSH_DROP_AFTER))
        return max(MIN_SSH_DROP_DELAY, self._drop.uniform(0.0, longest))

    def unreachable(self, node_name: str, hosts: int) -> set[int]:
        """Indices of the workers of `node_name` (a full node name) to keep unreachable."""
        out = set()
        for item in self._values.get(UNREACHABLE_WORKERS, ()):
            spec, _, index = str(item).rpartition(":")
            if _node_matches(spec, node_name) and int(index) < hosts:
                out.add(int(index))
        return out
