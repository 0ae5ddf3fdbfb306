"""Compute Engine disks a node attaches as `dataDisks[] {sourceDisk, mode}`.

A minimal disks store: an admin call creates a disk (name, size in GB) in a project and zone,
backed by a sparse image file `<state dir>/disks/<project>.<zone>.<name>.img` that starts
unformatted, as a new Persistent Disk does; Compute's `disks.get`/`disks.list` read them
(`ENDPOINT/compute/v1/projects/P/zones/Z/disks[/NAME]`, shapes per compute.v1.json).

Attaching follows GCP: `sourceDisk` is `projects/P/zones/Z/disks/NAME` in the node's zone
(checked when the create is called); the disk must exist and a READ_WRITE (single-writer)
disk may be attached to one VM at a time, a READ_ONLY one to many, never both at once
(checked when the create operation runs: the operation fails and the node is gone, as with
any backend error). A multi-host node attaches each disk to every worker, so READ_WRITE
needs a single-host node. Workers see the disk where a TPU VM does (image.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tpuctl.emulator import catalog
from tpuctl.emulator.capacity import bad_value, unknown_field
from tpuctl.emulator.errors import ApiError, already_exists, invalid_argument
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.resources import NodeRecord

_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_URL = r"(?:https://(?:www|compute)\.googleapis\.com/compute/(?:v1|beta|alpha)/)?"
_SOURCE_RE = re.compile(
    rf"^{_URL}projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/disks/(?P<name>[^/]+)$")
MODES = ("READ_WRITE", "READ_ONLY")
MAX_SIZE_GB = 65536
DEFAULT_SIZE_GB = 10
CODE_NOT_FOUND = 5
CODE_FAILED_PRECONDITION = 9
GIB = 1 << 30


def disk_key(project: str, zone: str, name: str) -> str:
    return f"projects/{project}/zones/{zone}/disks/{name}"


def _zone_url(base: str, project: str, zone: str) -> str:
    return f"{base}/compute/v1/projects/{project}/zones/{zone}"


def parse_source(value: Any, path: str) -> tuple[str, str, str]:
    """(project, zone, name) of a `sourceDisk`."""
    if not isinstance(value, str):
        raise bad_value(path, "TYPE_STRING", value)
    m = _SOURCE_RE.match(value)
    if m is None or not _NAME_RE.match(m.group("name")):
        raise invalid_argument(
            f"Invalid value for field '{path}': {value!r}. Must be the full path of an "
            "existing disk: projects/PROJECT/zones/ZONE/disks/DISK")
    return m.group("project"), m.group("zone"), m.group("name")


def data_disks(value: Any, zone: str, hosts: int) -> list[dict[str, str]]:
    """A create request's dataDisks, checked as the API front end does; stored with the mode
    as a name (READ_WRITE when unspecified, the API's default)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_value("node.data_disks", "TYPE_MESSAGE", value)
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for i, item in enumerate(value):
        path = f"node.data_disks[{i}]"
        if not isinstance(item, dict):
            raise bad_value(path, "type.googleapis.com/google.cloud.tpu.v2.AttachedDisk", item)
        for key in item:
            if key not in ("sourceDisk", "mode"):
                raise unknown_field(key, path)
        where = parse_source(item.get("sourceDisk"), f"{path}.source_disk")
        if where[1] != zone:
            raise invalid_argument(
                f"Invalid value for field '{path}.source_disk': {item['sourceDisk']!r}. The "
                f"disk must be in the node's zone {zone}")
        if where in seen:
            raise invalid_argument(f"Invalid value for field '{path}.source_disk': "
                                   f"{item['sourceDisk']!r} is attached twice")
        seen.add(where)
        mode = catalog.decode_enum(catalog.DISK_MODE, item.get("mode", "READ_WRITE"))
        if mode is None:
            raise bad_value(f"{path}.mode", "TYPE_ENUM", item.get("mode"))
        mode = "READ_WRITE" if mode == "DISK_MODE_UNSPECIFIED" else mode
        if mode == "READ_WRITE" and hosts > 1:
            raise invalid_argument(
                f"Invalid value for field '{path}.mode': READ_WRITE. A disk in read-write "
                f"(single-writer) mode attaches to at most one VM and this node has {hosts} "
                "VMs: attach it READ_ONLY, or use a single-host accelerator type")
        out.append({"sourceDisk": item["sourceDisk"], "mode": mode})
    return out


class Disks:
    """The disks of a `Store`, their image files and who attaches them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._attaching: set[str] = set()  # CREATING nodes whose disks are attached

    @property
    def root(self) -> Path:
        return self._store.state_dir / "disks"

    def image(self, key: str) -> Path:
        project, _, zone, _, name = key.split("/")[1:6]
        return self.root / f"{project}.{zone}.{name}.img"

    # -- admin calls ---------------------------------------------------------------------------
    def create(self, project: str, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_zone(project, zone)
        if not isinstance(body, dict):
            raise invalid_argument("the disk must be a JSON object")
        extra = sorted(set(body) - {"name", "sizeGb"})
        if extra:
            raise invalid_argument(f"unknown field {extra[0]!r} (name, sizeGb)")
        name = body.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise invalid_argument(
                f"Invalid value for field 'resource.name': {name!r}. Must be a match of regex "
                "'[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?'")
        size = body.get("sizeGb", DEFAULT_SIZE_GB)
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE_GB:
            raise invalid_argument(
                f"Invalid value for field 'resource.sizeGb': {size!r}. Must be 1..{MAX_SIZE_GB}")
        key = disk_key(project, zone, name)
        if key in self._store.disks:
            raise already_exists(key)
        path = self.image(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size * GIB)  # sparse: unformatted zeros, as a new disk is
        finally:
            os.close(fd)
        digest = hashlib.sha256(key.encode()).hexdigest()
        self._store.disks[key] = {"name": name, "project": project, "zone": zone,
                                  "sizeGb": str(size), "id": str(int(digest, 16) % 10**18)}
        self._store.save()
        return self.view(key, "")

    def delete(self, project: str, zone: str, name: str) -> None:
        key = disk_key(project, zone, name)
        self._get(key)
        users = self.users(key)
        if users:  # Compute's resourceInUseByAnotherResource
            raise ApiError(400, "FAILED_PRECONDITION",
                           f"The disk resource '{key}' is already being used by '{users[0]}'")
        del self._store.disks[key]
        path = self.image(key)
        path.unlink(missing_ok=True)
        shutil.rmtree(fs_root(path), ignore_errors=True)
        self._store.save()

    def list_disks(self, project: str, zone: str, base: str) -> list[dict[str, Any]]:
        self._check_zone(project, zone)
        prefix = f"projects/{project}/zones/{zone}/disks/"
        return [self.view(k, base) for k in self._store.disks if k.startswith(prefix)]

    def get(self, project: str, zone: str, name: str, base: str) -> dict[str, Any]:
        key = disk_key(project, zone, name)
        self._get(key)
        return self.view(key, base)

    def view(self, key: str, base: str) -> dict[str, Any]:
        """The disk as Compute's `disks.get` answers it (`users`: the TPU VMs of nodes that
        attach it, by their instance names)."""
        d = self._store.disks[key]
        zone_url = _zone_url(base, d["project"], d["zone"])
        out: dict[str, Any] = {
            "kind": "compute#disk", "id": d["id"], "name": d["name"], "sizeGb": d["sizeGb"],
            "zone": zone_url, "status": "READY", "selfLink": f"{zone_url}/disks/{d['name']}",
            "type": f"{zone_url}/diskTypes/pd-balanced",
            "creationTimestamp": "2024-01-01T00:00:00.000-07:00",
        }
        users = [f"{zone_url}/instances/{u.rsplit('/', 1)[1]}" for u in self.users(key)]
        if users:
            out["users"] = users
        return out

    # -- attachments ---------------------------------------------------------------------------
    def attached(self, rec: NodeRecord) -> list[tuple[str, str]]:
        """(disk key, mode) of a node's dataDisks."""
        out = []
        for d in rec.resource.get("dataDisks") or []:
            project, zone, name = parse_source(d["sourceDisk"], "dataDisks")
            out.append((disk_key(project, zone, name), str(d.get("mode", "READ_WRITE"))))
        return out

    def users(self, key: str, modes: tuple[str, ...] = MODES,
              exclude: str = "") -> list[str]:
        """The instances (worker VM names) that attach disk `key` in one of `modes`: every
        worker of every node that attaches it, but a node still CREATING only once its
        attachment went through (`check_attach`), and never node `exclude`."""
        from tpuctl.emulator.nodeviews import hostname

        out = []
        for rec in self._store.nodes.values():
            if rec.name == exclude or (rec.state == "CREATING"
                                       and rec.name not in self._attaching):
                continue
            if any(k == key and m in modes for k, m in self.attached(rec)):
                prefix = rec.name.split("/nodes/")[0].replace("/locations/", "/zones/")
                out += [f"{prefix}/instances/{hostname(rec, i)}" for i in range(rec.hosts)]
        return out

    def check_attach(self, rec: NodeRecord) -> tuple[int, str] | None:
        """Attach a CREATING node's disks, or say why they cannot be (an operation error:
        a disk that does not exist, or one another VM holds in a conflicting mode)."""
        for key, mode in self.attached(rec):
            if key not in self._store.disks:
                return CODE_NOT_FOUND, f"The resource '{key}' was not found"
            clash = MODES if mode == "READ_WRITE" else ("READ_WRITE",)
            others = self.users(key, clash, exclude=rec.name)
            if others:
                return (CODE_FAILED_PRECONDITION,
                        f"The disk resource '{key}' is already being used by '{others[0]}'")
        self._attaching.add(rec.name)
        return None

    def detach(self, name: str) -> None:
        """A node is gone (or its create failed): it attaches nothing any more."""
        self._attaching.discard(name)

    def devices(self, rec: NodeRecord) -> list[tuple[Path, bool]]:
        """(image file, read-only?) of each data disk, in dataDisks order."""
        return [(self.image(k), m == "READ_ONLY") for k, m in self.attached(rec)
                if k in self._store.disks]

    def _get(self, key: str) -> dict[str, Any]:
        d = self._store.disks.get(key)
        if d is None:
            raise ApiError(404, "NOT_FOUND", f"The resource '{key}' was not found")
        return d

    def _check_zone(self, project: str, zone: str) -> None:
        if not catalog.is_known_zone(zone):
            raise ApiError(404, "NOT_FOUND", f"The resource 'projects/{project}/zones/{zone}' "
                           "was not found")


def fs_root(image: Path) -> Path:
    """Where the mount stand-in keeps a disk's files, one directory per filesystem UUID."""
    return image.with_suffix(".fs")
