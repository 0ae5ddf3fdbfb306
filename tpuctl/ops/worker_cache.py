"""Each node's worker list, kept for a minute so repeated commands skip the API.

A command from a shell alias (`tpuctl exec`, `tail`, `status`, ...) then reaches the workers
without importing google-cloud or calling the API: about 0.3 s less per command
(docs/performance.md). Trust is unchanged: an entry is written only by `ensure_access`, after
this user's key is authorized on the node and the host keys the API published are pinned, and
it holds exactly those keys. A stale entry costs one quick failed connect: a worker that cannot
be reached from a cached list makes the session re-read the node from the API, which raises
if the node is gone or preempted and otherwise refreshes the entry and retries the connect
(`SliceSession.refresh`). Deleting a node through tpuctl removes its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tpuctl.cloud.base import Cloud
from tpuctl.model import Slice, Worker
from tpuctl.paths import private_dir, worker_cache_dir

TTL_SECONDS = 60.0
_FORMAT = 1


def node_identity(cloud: Cloud, name: str) -> str:
    """Which node this is: (endpoint, project, zone, name), since emulators reuse names across
    runs. Keys this cache and the connection daemon's pools."""
    return json.dumps([cloud.endpoint or "gcp", cloud.project, cloud.zone, name])


def _entry_path(cloud: Cloud, name: str) -> Path:
    """One file per node identity."""
    digest = hashlib.sha256(node_identity(cloud, name).encode()).hexdigest()[:16]
    return worker_cache_dir() / f"{name}.{digest}.json"


def _key_id(public_key: str) -> str:
    return hashlib.sha256(public_key.strip().encode()).hexdigest()


def store(cloud: Cloud, sl: Slice, *, public_key: str, now: float | None = None) -> None:
    """Remember a READY node's workers (no metadata: it may hold other users' data)."""
    record = asdict(sl)
    record["metadata"] = {}
    entry = {"format": _FORMAT, "fetched_at": time.time() if now is None else now,
             "key": _key_id(public_key), "slice": record}
    path = _entry_path(cloud, sl.name)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(entry, f)
    os.replace(tmp, path)


def load(cloud: Cloud, name: str, *, public_key: str, ttl: float = TTL_SECONDS,
         now: float | None = None) -> Slice | None:
    """The cached READY slice if it is younger than `ttl` and was written for this key."""
    try:
        entry = json.loads(_entry_path(cloud, name).read_text())
        age = (time.time() if now is None else now) - float(entry["fetched_at"])
        if entry.get("format") != _FORMAT or entry.get("key") != _key_id(public_key):
            return None
        if not 0 <= age <= ttl:
            return None
        return _slice(entry["slice"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another version: ask the API


def forget(cloud: Cloud, name: str) -> None:
    _entry_path(cloud, name).unlink(missing_ok=True)


def _slice(d: dict[str, Any]) -> Slice | None:
    workers = tuple(Worker(index=int(w["index"]), ip=str(w["ip"]), ssh_port=int(w["ssh_port"]),
                           host_key=w.get("host_key")) for w in d["workers"])
    sl = Slice(name=str(d["name"]), project=str(d["project"]), zone=str(d["zone"]),
               accelerator_type=str(d["accelerator_type"]),
               runtime_version=str(d["runtime_version"]), state=str(d["state"]),
               health=str(d.get("health", "")), labels=dict(d.get("labels") or {}),
               workers=workers, spot=bool(d.get("spot")),
               create_time=str(d.get("create_time", "")),
               queued_resource=str(d.get("queued_resource", "")),
               startup_script=bool(d.get("startup_script")),
               slices=int(d.get("slices") or 1))
    if sl.state != "READY" or not workers or any(w.host_key is None for w in workers):
        return None
    return sl
