"""Fault injection and the emulator's settings: which failures and which GCP behaviours it
produces, and when.

Both are set by `tpuctl emulator serve --fault KEY=VALUE` (repeatable; also `start`) and at
run time by the admin endpoint `/emulator/v1/faults` (GET reads, POST merges, DELETE clears:
every key back to its default). Every random decision comes from one `random.Random` per
kind, seeded from the emulator's seed, so a given seed and request order always yield the
same failures. Keys are validated strictly (faultvalues.py); docs/emulator.md has the table.

Settings (GCP behaviours with a default): `network=flat|cloud` (one address per worker, or
distinct internal and external ones), `guest-agent-delay=S` (seconds before a changed key
works), `account=EMAIL` (the signed-in account of the OS Login API).
API faults: `api-error-rate`, `stockout-zones`, `stockout-mode`, `create-delay`.
SSH faults: `ssh-refuse-rate`, `ssh-drop-rate`, `ssh-drop-after`, `unreachable-workers`,
`stuck-workers`. Slice faults: `missing-workers`. What `doctor` checks: `full-disk`,
`held-tpu`, `stale-lockfile`, `blocked-ports`, `package-skew`, `no-ensurepip`.
"""

from __future__ import annotations

import getpass
import random
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tpuctl.emulator import faultvalues as fv
from tpuctl.emulator.faultvalues import FaultError, node_matches

__all__ = ["FaultError", "Faults", "InjectedError", "parse_assignments", "parse_seed",
           "validate"]

API_ERROR_RATE = "api-error-rate"
STOCKOUT_ZONES = "stockout-zones"
STOCKOUT_MODE = "stockout-mode"
CREATE_DELAY = "create-delay"
SSH_REFUSE_RATE = "ssh-refuse-rate"
SSH_DROP_RATE = "ssh-drop-rate"
SSH_DROP_AFTER = "ssh-drop-after"
UNREACHABLE_WORKERS = "unreachable-workers"
STUCK_WORKERS = "stuck-workers"
MISSING_WORKERS = "missing-workers"
FULL_DISK = "full-disk"
HELD_TPU = "held-tpu"
STALE_LOCKFILE = "stale-lockfile"
BLOCKED_PORTS = "blocked-ports"
PACKAGE_SKEW = "package-skew"
NO_ENSUREPIP = "no-ensurepip"
NETWORK = "network"
GUEST_AGENT_DELAY = "guest-agent-delay"
ACCOUNT = "account"

NETWORK_MODES = ("flat", "cloud")
# Defaults of the settings: GCP's behaviour (distinct internal and external addresses, a
# guest agent that applies a key change seconds later); `flat` and `0` stay available for
# tests that need speed.
DEFAULT_NETWORK = "cloud"
DEFAULT_GUEST_AGENT_DELAY = 3.0

STOCKOUT_MODES = ("operation", "request")
DEFAULT_SSH_DROP_AFTER = 1.0
MIN_SSH_DROP_DELAY = 0.05

# Keys whose values are lists: repeated `--fault KEY=...` options accumulate.
LIST_KEYS = frozenset({
    STOCKOUT_ZONES, UNREACHABLE_WORKERS, STUCK_WORKERS, MISSING_WORKERS, FULL_DISK, HELD_TPU,
    STALE_LOCKFILE, BLOCKED_PORTS, PACKAGE_SKEW, NO_ENSUREPIP,
})
# Keys that name workers (NODE:I...): the worker host acts them out (worldfaults.py).
WORKER_KEYS = frozenset({
    UNREACHABLE_WORKERS, FULL_DISK, HELD_TPU, STALE_LOCKFILE, BLOCKED_PORTS, NO_ENSUREPIP,
})

# What API requests fail with: (HTTP code, status, message). The 429 is a rate limit, never
# capacity: its text avoids every word tpuctl's classifier reads as capacity or quota.
RATE_LIMIT_MESSAGE = (
    "Rate limit exceeded for 'Requests per minute' of service '{service}' for "
    "consumer '{consumer}'. Retry with exponential backoff."
)
UNAVAILABLE_MESSAGE = "The service is currently unavailable."
INTERNAL_MESSAGE = "Internal error encountered."
STOCKOUT_MESSAGE = (
    'There is no more capacity in the zone "{zone}"; you can try in another zone where Cloud '
    "TPU Nodes are offered (see https://cloud.google.com/tpu/docs/regions) [EID: 0x{eid}]"
)
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


@dataclass(frozen=True)
class InjectedError:
    """An API error the faults decided on: a Google error envelope's parts."""

    http_code: int
    status: str
    message: str
    details: tuple[dict[str, Any], ...] = ()


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    NETWORK: fv.choice(*NETWORK_MODES),
    GUEST_AGENT_DELAY: fv.seconds,
    ACCOUNT: fv.email,
    API_ERROR_RATE: fv.rate,
    STOCKOUT_ZONES: fv.zones,
    STOCKOUT_MODE: fv.choice(*STOCKOUT_MODES),
    CREATE_DELAY: fv.seconds,
    SSH_REFUSE_RATE: fv.rate,
    SSH_DROP_RATE: fv.rate,
    SSH_DROP_AFTER: lambda k, v: fv.seconds(k, v, positive=True),
    UNREACHABLE_WORKERS: fv.node_workers,
    STUCK_WORKERS: fv.node_workers,
    MISSING_WORKERS: fv.node_counts,
    FULL_DISK: fv.node_workers,
    HELD_TPU: fv.node_workers,
    STALE_LOCKFILE: fv.node_workers,
    BLOCKED_PORTS: fv.node_ports,
    PACKAGE_SKEW: fv.node_worker_packages,
    NO_ENSUREPIP: fv.nodes,
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


def default_account() -> str:
    """The OS Login account when none is set: `<local user>@example.com`."""
    local = re.sub(r"[^a-z0-9._-]", "-", getpass.getuser().lower()).strip(".-") or "user"
    return f"{local}@example.com"


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
        self._agent = random.Random(f"{self._seed}:guest-agent")

    def update(self, values: Mapping[str, Any]) -> None:
        """Merge faults (validated here too); a `None` value clears that key, and so does a
        setting's default value."""
        checked = validate(values)
        defaults = {NETWORK: DEFAULT_NETWORK, GUEST_AGENT_DELAY: DEFAULT_GUEST_AGENT_DELAY,
                    ACCOUNT: default_account()}
        for key, value in checked.items():
            if value is None or value == [] or (key.endswith("-rate") and value == 0.0) or (
                key in defaults and value == defaults[key]
            ):
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def clear(self) -> None:
        self._values.clear()

    def values(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._values.items()}

    def settings(self) -> dict[str, Any]:
        """Every setting's effective value, defaults included."""
        return {NETWORK: "cloud" if self.cloud_network else "flat",
                GUEST_AGENT_DELAY: self.guest_agent_delay, ACCOUNT: self.account}

    def to_json(self) -> dict[str, Any]:
        """What GET answers: the seed, the keys set (defaults left out), the settings."""
        return {"seed": self._seed, "faults": self.values(), "settings": self.settings()}

    # -- decisions -----------------------------------------------------------------------------
    def api_error(self, project: str | None = None,
                  service: str = "tpu.googleapis.com") -> InjectedError | None:
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
                "metadata": {"service": service, "consumer": consumer},
            }
            message = RATE_LIMIT_MESSAGE.format(consumer=consumer, service=service)
            return InjectedError(429, "RESOURCE_EXHAUSTED", message, (info,))
        if kind == 503:
            return InjectedError(503, "UNAVAILABLE", UNAVAILABLE_MESSAGE)
        return InjectedError(500, "INTERNAL", INTERNAL_MESSAGE)

    def stocked_out(self, zone: str) -> bool:
        return zone in self._values.get(STOCKOUT_ZONES, ())

    @property
    def stockout_mode(self) -> str:
        return str(self._values.get(STOCKOUT_MODE, "operation"))

    def stockout_message(self, zone: str) -> str:
        return STOCKOUT_MESSAGE.format(zone=zone, eid=self.eid())

    def eid(self) -> str:
        """An error id, as GCP's capacity errors end with `[EID: 0x...]` (seeded)."""
        return f"{self._eid.getrandbits(60):x}"

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
        return self.workers(UNREACHABLE_WORKERS, node_name, hosts)

    def workers(self, key: str, node_name: str, hosts: int) -> set[int]:
        """Indices of the workers of `node_name` a NODE:I[:...] fault names."""
        out = set()
        for item in self._values.get(key, ()):
            spec, index, *_ = str(item).split(":")
            if node_matches(spec, node_name) and int(index) < hosts:
                out.add(int(index))
        return out

    def named(self, key: str, node_name: str, index: int) -> list[str]:
        """What a NODE:I:X fault says about one worker (ports, packages)."""
        out = []
        for item in self._values.get(key, ()):
            spec, i, rest = str(item).split(":", 2)
            if node_matches(spec, node_name) and int(i) == index:
                out.append(rest)
        return out

    def node_named(self, key: str, node_name: str) -> bool:
        """Does a NODE list fault (no-ensurepip) name this node?"""
        return any(node_matches(str(spec), node_name) for spec in self._values.get(key, ()))

    def missing_workers(self, node_name: str, *, blank: bool = False) -> int:
        """How many of the node's last workers never registered: absent from the API, or
        (`blank`) listed with blank TPU metadata."""
        for item in self._values.get(MISSING_WORKERS, ()):
            spec, count, *form = str(item).split(":")
            if node_matches(spec, node_name) and bool(form) == blank:
                return int(count)
        return 0

    # -- settings ------------------------------------------------------------------------------
    @property
    def cloud_network(self) -> bool:
        return self._values.get(NETWORK, DEFAULT_NETWORK) == "cloud"

    @property
    def guest_agent_delay(self) -> float:
        return float(self._values.get(GUEST_AGENT_DELAY, DEFAULT_GUEST_AGENT_DELAY))

    @property
    def account(self) -> str:
        return str(self._values.get(ACCOUNT) or default_account())

    def guest_agent_lag(self) -> float:
        """The share (0.5..1) of the delay one change of keys takes to apply (seeded; drawn
        only while a delay is set)."""
        return 1.0 if self.guest_agent_delay <= 0 else self._agent.uniform(0.5, 1.0)
