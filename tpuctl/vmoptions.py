"""The VM options users set with gcloud (`--service-account`, `--scopes`, `--metadata`,
`--metadata-from-file`, `--data-disk`), checked locally as the API would check them, and the
TPU v2 REST fields they become. Nothing here imports google-cloud."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpuctl.errors import UsageError

SCOPE_URL = "https://www.googleapis.com/auth/"
# gcloud's scope aliases (`gcloud compute instances create --help`), as it expands them
SCOPE_ALIASES: dict[str, tuple[str, ...]] = {
    "bigquery": ("bigquery",),
    "cloud-platform": ("cloud-platform",),
    "cloud-source-repos": ("source.full_control",),
    "cloud-source-repos-ro": ("source.read_only",),
    "compute-ro": ("compute.readonly",),
    "compute-rw": ("compute",),
    "datastore": ("datastore",),
    "default": ("devstorage.read_only", "logging.write", "monitoring.write", "pubsub",
                "service.management.readonly", "servicecontrol", "trace.append"),
    "gke-default": ("devstorage.read_only", "logging.write", "monitoring",
                    "service.management.readonly", "servicecontrol", "trace.append"),
    "logging-write": ("logging.write",),
    "monitoring": ("monitoring",),
    "monitoring-read": ("monitoring.read",),
    "monitoring-write": ("monitoring.write",),
    "pubsub": ("pubsub",),
    "service-control": ("servicecontrol",),
    "service-management": ("service.management.readonly",),
    "sql-admin": ("sqlservice.admin",),
    "storage-full": ("devstorage.full_control",),
    "storage-ro": ("devstorage.read_only",),
    "storage-rw": ("devstorage.read_write",),
    "taskqueue": ("taskqueue",),
    "trace": ("trace.append",),
    "userinfo-email": ("userinfo.email",),
}
DEFAULT_SCOPES = (SCOPE_URL + "cloud-platform",)  # what the TPU API gives a node without any

_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_METADATA_BYTES = 512 * 1024  # the whole of a node's metadata
MAX_VALUE_BYTES = 256 * 1024  # one value (startup-script among them)
# keys tpuctl writes itself: a user's value would be overwritten or lock tpuctl out
MANAGED_METADATA = ("ssh-keys",)
_DISK_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DISK_FULL = re.compile(r"^projects/[^/\s]+/zones/[^/\s]+/disks/(?P<name>[^/\s]+)$")
DISK_MODES = {"read-write": "READ_WRITE", "read-only": "READ_ONLY"}


@dataclass(frozen=True)
class DataDisk:
    source: str  # a disk name (in the node's project and zone) or projects/P/zones/Z/disks/N
    mode: str = "READ_WRITE"  # READ_WRITE | READ_ONLY, as the API spells them

    def source_disk(self, project: str, zone: str) -> str:
        if self.source.startswith("projects/"):
            return self.source
        return f"projects/{project}/zones/{zone}/disks/{self.source}"


@dataclass(frozen=True)
class VmOptions:
    service_account: str = ""  # email; "" with scopes: the project's default account
    scopes: tuple[str, ...] = ()  # full URLs
    metadata: dict[str, str] = field(default_factory=dict)
    data_disks: tuple[DataDisk, ...] = ()

    @property
    def startup_script(self) -> bool:
        return "startup-script" in self.metadata or "startup-script-url" in self.metadata


def parse_scopes(values: Iterable[str]) -> tuple[str, ...]:
    """Aliases and URLs, comma-separated and/or repeated, in order, without duplicates."""
    out: list[str] = []
    for value in values:
        for item in (s.strip() for s in value.split(",")):
            if not item:
                raise UsageError(f"invalid --scopes {value!r}: an empty scope",
                                 hint="separate scopes with commas, e.g. "
                                 "--scopes cloud-platform,storage-ro")
            if item.startswith("https://"):
                if not item.startswith(SCOPE_URL) or len(item) == len(SCOPE_URL) \
                        or any(c.isspace() for c in item):
                    raise UsageError(f"invalid scope URL {item[:100]!r}",
                                     hint=f"a scope URL starts with {SCOPE_URL}, e.g. "
                                     f"{SCOPE_URL}devstorage.read_only")
                urls: tuple[str, ...] = (item,)
            elif item in SCOPE_ALIASES:
                urls = tuple(SCOPE_URL + s for s in SCOPE_ALIASES[item])
            else:
                raise UsageError(f"unknown scope alias {item[:60]!r}",
                                 hint="use a URL or one of gcloud's aliases: "
                                 + ", ".join(SCOPE_ALIASES))
            out.extend(u for u in urls if u not in out)
    return tuple(out)


def parse_service_account(email: str | None) -> str:
    if email is None:
        return ""
    if email != "default" and not _EMAIL.match(email):
        raise UsageError(f"invalid --service-account {email[:100]!r}",
                         hint="give the account's email, e.g. "
                         "trainer@my-project.iam.gserviceaccount.com (or `default`)")
    return email


def _key(key: str, flag: str) -> str:
    if not _METADATA_KEY.match(key):
        raise UsageError(f"invalid {flag} key {key[:60]!r}",
                         hint="metadata keys are 1-128 letters, digits, '-' or '_'")
    if key in MANAGED_METADATA:
        raise UsageError(f"{flag} {key} is managed by tpuctl",
                         hint="tpuctl adds your SSH key itself; use another key")
    return key


def parse_metadata(pairs: Iterable[str], files: Iterable[str] = (),
                   base: Path | None = None) -> dict[str, str]:
    """`KEY=VALUE` and `KEY=FILE` (read now, relative to `base`) as one metadata dict; a
    key given twice, a missing file or a value over GCP's limits is a UsageError."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"invalid --metadata {pair[:60]!r}: no '='",
                             hint="give KEY=VALUE, e.g. --metadata team=ml")
        _add(out, _key(key, "--metadata"), value, "--metadata")
    for pair in files:
        key, sep, name = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"invalid --metadata-from-file {pair[:60]!r}",
                             hint="give KEY=FILE, e.g. --metadata-from-file "
                             "startup-script=setup.sh")
        path = Path(name).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        try:
            value = path.read_text()
        except FileNotFoundError:
            raise UsageError(f"--metadata-from-file {key}: file {name!r} not found",
                             hint="give a readable file's path") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--metadata-from-file {key}: cannot read {name!r} "
                             f"({type(e).__name__})", hint="give a readable text file") from None
        _add(out, _key(key, "--metadata-from-file"), value, "--metadata-from-file")
    return check_metadata_size(out)


def _add(out: dict[str, str], key: str, value: str, flag: str) -> None:
    if key in out:
        raise UsageError(f"metadata key {key!r} given twice",
                         hint="give each key once (--metadata or --metadata-from-file)")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise UsageError(f"{flag} {key}: the value has {len(value.encode())} bytes "
                         f"(GCP takes at most {MAX_VALUE_BYTES})",
                         hint="keep the value smaller, or fetch the data at boot instead")
    out[key] = value


def check_metadata_size(metadata: Mapping[str, str]) -> dict[str, str]:
    total = sum(len(k) + len(v.encode()) for k, v in metadata.items())
    if total > MAX_METADATA_BYTES:
        raise UsageError(f"the node's metadata has {total} bytes (GCP takes at most "
                         f"{MAX_METADATA_BYTES})", hint="give fewer or smaller values")
    return dict(metadata)


def parse_data_disk(text: str) -> DataDisk:
    """`source=DISK[,mode=read-only|read-write]`, as gcloud's --data-disk."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("source", "mode") or key in fields:
            raise UsageError(f"invalid --data-disk {text[:100]!r}",
                             hint="give source=DISK[,mode=read-only|read-write], once each")
        fields[key] = value.strip()
    source = fields.get("source", "")
    m = _DISK_FULL.match(source)
    if not (_DISK_NAME.match(source) or (m and _DISK_NAME.match(m.group("name")))):
        raise UsageError(f"invalid --data-disk source {source[:100]!r}",
                         hint="give the disk's name or projects/P/zones/ZONE/disks/NAME")
    mode = fields.get("mode", "read-write")
    if mode not in DISK_MODES:
        raise UsageError(f"invalid --data-disk mode {mode[:40]!r}",
                         hint="give mode=read-only or mode=read-write")
    return DataDisk(source, DISK_MODES[mode])


def check_disks(disks: tuple[DataDisk, ...], hosts: int, accelerator: str) -> None:
    """A disk attached READ_WRITE goes to one VM: never on a multi-host node (GCP refuses
    it too); the same disk twice is refused."""
    seen: set[str] = set()
    for d in disks:
        key = d.source_disk("p", "z") if not d.source.startswith("projects/") else d.source
        if key in seen:
            raise UsageError(f"--data-disk {d.source!r} given twice",
                             hint="attach each disk once")
        seen.add(key)
        if d.mode == "READ_WRITE" and hosts > 1:
            raise UsageError(
                f"--data-disk {d.source!r} is read-write, but {accelerator} has {hosts} hosts",
                hint="a read-write disk attaches to one VM: add mode=read-only, or use a "
                "single-host type")


def node_fields(vm: VmOptions, project: str, zone: str) -> dict[str, Any]:
    """The node's `serviceAccount` and `dataDisks` (REST JSON names; empty ones left out).
    Metadata goes with the node's own (merged with tpuctl's ssh-keys)."""
    out: dict[str, Any] = {}
    if vm.service_account or vm.scopes:
        account: dict[str, Any] = {}
        if vm.service_account:
            account["email"] = vm.service_account
        account["scope"] = list(vm.scopes or DEFAULT_SCOPES)
        out["serviceAccount"] = account
    if vm.data_disks:
        out["dataDisks"] = [{"sourceDisk": d.source_disk(project, zone), "mode": d.mode}
                            for d in vm.data_disks]
    return out
