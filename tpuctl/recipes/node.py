"""A recipe's `node:` block: the capacity and VM options `create` takes as flags (same names,
same checks), and where to mount each data disk."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tpuctl.capacity import Capacity, parse_capacity
from tpuctl.errors import UsageError
from tpuctl.vmoptions import (
    DISK_MODES,
    VmOptions,
    parse_data_disk,
    parse_metadata,
    parse_scopes,
    parse_service_account,
)

_MOUNT = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _checked(fn: object) -> None:
    """Run a flag parser for its checks: its UsageError becomes the field's error."""
    try:
        fn()  # type: ignore[operator]
    except UsageError as e:
        raise ValueError(f"{e.message} ({e.hint})" if e.hint else e.message) from None


class DataDiskSpec(_Strict):
    source: str  # a disk name in the node's zone, or projects/P/zones/Z/disks/NAME
    mode: Literal["read-write", "read-only"] = "read-write"
    mount: str | None = None  # formatted if empty (read-write), then mounted here

    @model_validator(mode="after")
    def _check(self) -> DataDiskSpec:
        _checked(lambda: parse_data_disk(f"source={self.source},mode={self.mode}"))
        if self.mount is not None and (not _MOUNT.match(self.mount) or ".." in self.mount
                                       or self.mount.rstrip("/") == ""):
            raise ValueError(f"mount {self.mount[:80]!r} must be an absolute path of letters, "
                             "digits, '.', '_', '-' and '/' (e.g. /mnt/disks/data)")
        return self


class NodeBlock(_Strict):
    spot: bool = False
    queued: bool = False
    reserved: bool = False
    reservation: str | None = None
    guaranteed: bool = False
    valid_until: str | None = None
    valid_after: str | None = None
    service_account: str | None = None
    scopes: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    metadata_from_file: dict[str, str] = Field(default_factory=dict)  # key: path in the repo
    data_disks: list[DataDiskSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> NodeBlock:
        _checked(lambda: self.capacity(spot=False))
        _checked(lambda: parse_scopes(self.scopes))
        _checked(lambda: parse_service_account(self.service_account))
        _checked(lambda: parse_metadata([f"{k}={v}" for k, v in self.metadata.items()]))
        return self

    @field_validator("metadata_from_file")
    @classmethod
    def _files(cls, v: dict[str, str]) -> dict[str, str]:
        _checked(lambda: [parse_metadata([f"{k}=-"]) for k in v])
        return v

    def capacity(self, *, spot: bool) -> Capacity:
        return parse_capacity(spot=spot or self.spot, reserved=self.reserved,
                              reservation=self.reservation, guaranteed=self.guaranteed,
                              valid_until=self.valid_until, valid_after=self.valid_after,
                              queued=self.queued)


@dataclass(frozen=True)
class Mount:
    disk: int  # 1-based, in dataDisks order: /dev/disk/by-id/google-persistent-disk-N
    path: str
    read_only: bool


def node_options(block: NodeBlock, repo_root: Path, *, spot: bool
                 ) -> tuple[Capacity, VmOptions, tuple[Mount, ...]]:
    """The block as `create` takes it; `metadata_from_file` is read now, from the repo."""
    metadata = parse_metadata([f"{k}={v}" for k, v in block.metadata.items()],
                              [f"{k}={v}" for k, v in block.metadata_from_file.items()],
                              base=repo_root)
    vm = VmOptions(service_account=parse_service_account(block.service_account),
                   scopes=parse_scopes(block.scopes), metadata=metadata,
                   data_disks=tuple(parse_data_disk(f"source={d.source},mode={d.mode}")
                                    for d in block.data_disks))
    mounts = tuple(Mount(i + 1, d.mount, DISK_MODES[d.mode] == "READ_ONLY")
                   for i, d in enumerate(block.data_disks) if d.mount)
    return block.capacity(spot=spot), vm, mounts
