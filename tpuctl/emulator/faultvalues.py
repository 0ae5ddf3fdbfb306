"""The values fault and setting keys take, each parsed strictly into one canonical form; a bad
one raises `FaultError` naming the key and the value (faults.py holds the table of keys)."""

from __future__ import annotations

import math
import re
from typing import Any

from tpuctl.emulator import catalog


class FaultError(ValueError):
    """A fault spec that is not valid; the message names the key (and value)."""


# Node ids as GCP enforces them (also accepted: a full node name).
_NODE_ID = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_NODE_RE = re.compile(rf"^(?:projects/[^/:]+/locations/[^/:]+/nodes/)?{_NODE_ID}$")
# An account as Google identities look (the OS Login API's users/{user}).
_EMAIL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
# PyPI distribution names (PEP 508), for package-skew.
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")


def rate(key: str, value: Any) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"fault {key}: {value!r} is not a number (expected 0..1)") from None
    if isinstance(value, bool) or math.isnan(r) or not 0.0 <= r <= 1.0:
        raise FaultError(f"fault {key}: {value!r} is out of range (expected 0..1)")
    return r


def seconds(key: str, value: Any, *, positive: bool = False) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise FaultError(f"fault {key}: {value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(s) or s < 0 or (positive and s == 0):
        raise FaultError(
            f"fault {key}: {value!r} must be a number of seconds " + ("> 0" if positive else ">= 0")
        )
    return s


def items(key: str, value: Any) -> list[str]:
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


def zones(key: str, value: Any) -> list[str]:
    found = items(key, value)
    for zone in found:
        if not catalog.is_known_zone(zone):
            raise FaultError(
                f"fault {key}: unknown zone {zone!r} (known: {', '.join(catalog.ZONES)})"
            )
    return sorted(set(found))


def _number(text: str, low: int, high: int) -> int | None:
    if not text.isdigit() or len(text) > 6:
        return None
    n = int(text)
    return n if low <= n <= high else None


def _sorted(found: set[str]) -> list[str]:
    def order(item: str) -> tuple[str, list[int], str]:
        node, *rest = item.split(":")
        return node, [int(r) for r in rest if r.isdigit()], ":".join(rest)

    return sorted(found, key=order)


def node_workers(key: str, value: Any) -> list[str]:
    """`NODE:I[,NODE:I]`: worker I (>= 0) of a node."""
    out = set()
    for item in items(key, value):
        node, sep, index = item.rpartition(":")
        n = _number(index, 0, 999_999)
        if not sep or not _NODE_RE.match(node) or n is None:
            raise FaultError(
                f"fault {key}: {item!r} is not NODE:WORKER (e.g. my-node:2, worker >= 0)"
            )
        out.add(f"{node}:{n}")
    return _sorted(out)


def node_counts(key: str, value: Any) -> list[str]:
    """`NODE:N[:blank][,...]`: a number (>= 1) of a node's last workers, and how they are
    missing (absent from the API, or there with blank metadata)."""
    out: dict[str, str] = {}
    for item in items(key, value):
        parts = item.split(":")
        blank = len(parts) == 3 and parts[2] == "blank"
        if blank:
            parts.pop()
        n = _number(parts[1], 1, 999_999) if len(parts) == 2 else None
        if n is None or not _NODE_RE.match(parts[0]):
            raise FaultError(
                f"fault {key}: {item!r} is not NODE:COUNT[:blank] (e.g. my-node:1, >= 1)")
        if parts[0] in out:
            raise FaultError(f"fault {key}: node {parts[0]} is given twice")
        out[parts[0]] = f"{parts[0]}:{n}" + (":blank" if blank else "")
    return _sorted(set(out.values()))


def node_ports(key: str, value: Any) -> list[str]:
    """`NODE:PORT` (worker 0's port) or `NODE:I:PORT`, canonically `NODE:I:PORT`."""
    out = set()
    for item in items(key, value):
        parts = item.split(":")
        if len(parts) == 2:
            parts.insert(1, "0")
        worker = _number(parts[1], 0, 999_999) if len(parts) == 3 else None
        port = _number(parts[2], 1, 65535) if len(parts) == 3 else None
        if worker is None or port is None or not _NODE_RE.match(parts[0]):
            raise FaultError(
                f"fault {key}: {item!r} is not NODE:PORT or NODE:WORKER:PORT "
                "(e.g. my-node:8476, port 1..65535)"
            )
        out.add(f"{parts[0]}:{worker}:{port}")
    return _sorted(out)


def node_worker_packages(key: str, value: Any) -> list[str]:
    """`NODE:I[:PACKAGE]` (default package jax), canonically `NODE:I:PACKAGE`."""
    out = set()
    for item in items(key, value):
        parts = item.split(":")
        if len(parts) == 2:
            parts.append("jax")
        worker = _number(parts[1], 0, 999_999) if len(parts) == 3 else None
        if worker is None or not _NODE_RE.match(parts[0]) or not _PACKAGE_RE.match(parts[2]):
            raise FaultError(
                f"fault {key}: {item!r} is not NODE:WORKER[:PACKAGE] (e.g. my-node:1:jaxlib)"
            )
        out.add(f"{parts[0]}:{worker}:{parts[2].lower()}")
    return _sorted(out)


def nodes(key: str, value: Any) -> list[str]:
    """`NODE[,NODE]`."""
    found = items(key, value)
    for node in found:
        if not _NODE_RE.match(node):
            raise FaultError(f"fault {key}: {node!r} is not a node id or node name")
    return sorted(set(found))


def choice(*allowed: str) -> Any:
    def parse(key: str, value: Any) -> str:
        if value not in allowed:
            raise FaultError(f"fault {key}: {value!r} must be one of {', '.join(allowed)}")
        return str(value)

    return parse


def email(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL_RE.match(value.strip()):
        raise FaultError(f"{key}: {value!r} is not an account email (e.g. alice@example.com)")
    return value.strip().lower()


def node_matches(spec: str, node_name: str) -> bool:
    """`my-node` matches that id in any project and zone; a full name matches exactly."""
    if "/" in spec:
        return spec == node_name
    return node_name.rsplit("/", 1)[-1] == spec
