"""Each node's worker list, kept for a minute so repeated commands skip the API.

A command from a shell alias (`tpuctl exec`, `tail`, `status`, ...) then reaches the workers
without importing google-cloud or calling the API: about 0.3 s less per command
(docs/performance.md). Trust is unchanged: an entry is written only by `ensure_access`, after
this user's key is authorized on the node and the host keys the API published are pinned, and
it holds exactly those keys, the login (user, OS Login or metadata keys, when tpuctl last
changed the keys) and the SSH targets (address, port, login user, pinned key, way in) that
`ops.route.ssh_targets` made of them, so the fast path (tpuctl/cli/fast/) reaches workers
exactly as the full CLI does without computing anything itself (it declines an entry whose
targets it could not use identically: `fast_targets`). A stale entry costs one quick
failed connect: a worker that cannot be reached from a cached list makes the session re-read
the node from the API, which raises if the node is gone or preempted and otherwise refreshes
the entry and retries the connect (`SliceSession.refresh`). Deleting a node through tpuctl
removes its entry.

Light on purpose (no dataclasses, pathlib or google import at module level): the fast path
reads entries with `read_entry`.
"""

from __future__ import annotations

import os
import time

from tpuctl import wirejson
from tpuctl.digest import sha256_hex
from tpuctl.paths import local_dir, private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from tpuctl.cloud.base import Cloud
    from tpuctl.model import Access, Slice
    from tpuctl.workers.records import SshTarget

TTL_SECONDS = 60.0
# How a cached list's workers are connected to: one short attempt. A worker that does not
# answer within CACHED_CONNECT_TIMEOUT sends the session to the API (a preempted node's workers
# may not even refuse), and the full policy (ops/session.py) applies to the re-read list.
CACHED_CONNECT_TIMEOUT = 5.0
CACHED_CONNECT_ATTEMPTS = 1
# connections opened at once by one command (a session's default)
MAX_CONCURRENCY = 64
# How long after tpuctl changed a node's keys (or made the node) a refused login is taken for
# the guest agent still applying them, and retried (as gcloud's ssh retries for a while);
# ops/access.py's KEY_WAIT_S (here so that the fast path can see it without importing ops).
KEY_WAIT_S = 60.0
# 3: the login (user, mode, why, keys_changed_at) and the SSH targets, with the workers'
# external IPs and instance names
_FORMAT = 3


def identity(endpoint: str | None, project: str, zone: str, name: str) -> str:
    """Which node this is: (endpoint, project, zone, name), since emulators reuse names across
    runs. Keys this cache and the connection daemon's pools."""
    return wirejson.dumps([endpoint or "gcp", project, zone, name], spaced=True)


def node_identity(cloud: Cloud, name: str) -> str:
    return identity(cloud.endpoint, cloud.project, cloud.zone, name)


def entry_path(node: str, name: str) -> str:
    """One file per node identity (`identity`)."""
    digest = sha256_hex(node.encode())[:16]
    return os.path.join(local_dir("cache", "workers"), f"{name}.{digest}.json")


def key_id(public_key: str) -> str:
    return sha256_hex(public_key.strip().encode())


def store(cloud: Cloud, access: Access, *, public_key: str, targets: Sequence[SshTarget] = (),
          now: float | None = None) -> None:
    """Remember a READY node's workers (no metadata: it may hold other users' data), how this
    user logs in there (the login user keys the entry with the SSH key: a cached list is used
    only for that login, and a refused login re-reads the node) and the SSH targets made of
    them (the command's way in: `fast_targets` says when the fast path may use them)."""
    from dataclasses import asdict

    from tpuctl.record import as_dict

    sl = access.slice
    record = asdict(sl)
    record["metadata"] = {}
    entry = {"format": _FORMAT, "fetched_at": time.time() if now is None else now,
             "key": key_id(public_key), "slice": record, "login": asdict(access.login),
             "targets": [as_dict(t) for t in targets]}
    path = entry_path(node_identity(cloud, sl.name), sl.name)
    private_dir(os.path.dirname(path))
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    import json

    with os.fdopen(fd, "w") as f:
        json.dump(entry, f)
    os.replace(tmp, path)


def read_entry(node: str, name: str, *, public_key: str, ttl: float = TTL_SECONDS,
               now: float | None = None) -> dict[str, Any] | None:
    """The cached entry of a READY node if it is younger than `ttl`, was written for this key,
    names every worker with its host key and a login user; else None (ask the API)."""
    try:
        with open(entry_path(node, name), "rb") as f:
            entry = wirejson.loads(f.read())
        age = (time.time() if now is None else now) - float(entry["fetched_at"])
        if entry.get("format") != _FORMAT or entry.get("key") != key_id(public_key):
            return None
        if not 0 <= age <= ttl:
            return None
        sl = entry["slice"]
        workers = sl["workers"]
        if sl.get("state") != "READY" or not workers or \
                any(w.get("host_key") is None for w in workers) or not entry["login"]["user"]:
            return None
        return dict(entry)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, unreadable or from another version: ask the API


def fast_targets(entry: dict[str, Any], user: str) -> list[dict[str, Any]] | None:
    """An entry's stored SSH targets when the fast path, which only knows the default way in
    (direct to the workers' external IPs: it declines any `ssh:` block or way-in flag) and
    connects through the daemon, reaches the workers exactly as the full CLI would with
    them; else None (the full CLI). Not: another login user or OS Login, a jump host, a
    proxy command or IAP (the full CLI runs those tunnels in process), an internal address,
    or a list that is not one target per worker. Keys still settling (within KEY_WAIT_S of
    a change) need nothing more: a refused key is a transport failure, which the fast path
    hands to the full CLI with the daemon's answer (cli/fast/handoff.py), and the full CLI's
    session then waits for the key exactly as it would have (ops/session.py)."""
    try:
        login = entry["login"]
        if login.get("mode") != "metadata" or login.get("user") != user:
            return None
        workers = entry["slice"]["workers"]
        targets = list(entry["targets"])
        if len(targets) != len(workers):
            return None
        for t, w in zip(targets, workers, strict=True):
            if t["index"] != w["index"] or t["username"] != user or t.get("jump") or \
                    t.get("proxy_command") or not w.get("external_ip") or \
                    t["host"] != w["external_ip"] or t["port"] != w["ssh_port"] or \
                    t.get("host_key") != w["host_key"]:
                return None
        return targets
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def load(cloud: Cloud, name: str, *, public_key: str, ttl: float = TTL_SECONDS,
         now: float | None = None) -> Access | None:
    """The cached READY slice and login if younger than `ttl` and written for this key."""
    entry = read_entry(node_identity(cloud, name), name, public_key=public_key, ttl=ttl, now=now)
    if entry is None:
        return None
    try:
        return access_of(entry)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def key_change(cloud: Cloud, name: str) -> float:
    """When tpuctl last changed the node's keys, as its entry says (0 if none), however
    old the entry: a key change outlives the worker list's freshness."""
    try:
        with open(entry_path(node_identity(cloud, name), name), "rb") as f:
            entry = wirejson.loads(f.read())
        return float(entry["login"].get("keys_changed_at") or 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0.0


def forget(cloud: Cloud, name: str) -> None:
    path = entry_path(node_identity(cloud, name), name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def access_of(entry: dict[str, Any]) -> Access:
    """The `Access` (slice and login) an entry (`read_entry`) holds."""
    from tpuctl.model import Access, Login

    login = entry["login"]
    return Access(slice_of(entry), Login(user=str(login["user"]), mode=str(login["mode"]),
                                         why=str(login.get("why", "")),
                                         keys_changed_at=float(login.get("keys_changed_at")
                                                               or 0)))


def slice_of(entry: dict[str, Any]) -> Slice:
    """The `Slice` an entry (`read_entry`) holds."""
    from tpuctl.model import Slice, Worker

    d = entry["slice"]
    workers = tuple(Worker(index=int(w["index"]), ip=str(w["ip"]), ssh_port=int(w["ssh_port"]),
                           host_key=w.get("host_key"), external_ip=w.get("external_ip"),
                           hostname=w.get("hostname")) for w in d["workers"])
    return Slice(name=str(d["name"]), project=str(d["project"]), zone=str(d["zone"]),
                 accelerator_type=str(d["accelerator_type"]),
                 runtime_version=str(d["runtime_version"]), state=str(d["state"]),
                 health=str(d.get("health", "")), labels=dict(d.get("labels") or {}),
                 workers=workers, spot=bool(d.get("spot")),
                 create_time=str(d.get("create_time", "")),
                 queued_resource=str(d.get("queued_resource", "")),
                 startup_script=bool(d.get("startup_script")),
                 slices=int(d.get("slices") or 1))
