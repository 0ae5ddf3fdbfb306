"""What operations work through, bundled: the cloud, the workers, this machine's tpuctl files,
an HTTP client and the cost ledger. `tpuctl/wiring.py` chooses the adapters (GCP or an
emulator endpoint, the connection daemon or direct SSH, recording ones for `--dry-run`); ops
never import one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tpuctl.cloud.base import Cloud
from tpuctl.ledger import LedgerEvent, NullLedger
from tpuctl.model import Slice
from tpuctl.workers.base import SshTarget, Workers


class Connect(Protocol):
    """Opens a `Workers` on a slice's SSH targets. `shared`: a short command from a shell
    (exec, status, stop, runs) whose connections may be kept between commands; `pool` names
    the node those connections belong to."""

    def __call__(self, targets: Sequence[SshTarget], *, key_path: Path, pool: str,
                 shared: bool, connect_timeout: float, connect_attempts: int,
                 max_concurrency: int) -> Workers: ...


@dataclass(frozen=True)
class HttpReply:
    status: int
    text: str


class Http(Protocol):
    """One HTTP request from this machine (to a port `Workers.forward_local` opened).
    Raises TimeoutError past `timeout`, ConnectionError when nothing answers."""

    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float
                        ) -> HttpReply: ...


class Local(Protocol):
    """tpuctl's files on this machine: the user's SSH identity, each node's pinned host keys
    (known_hosts.d) and the worker cache (ops/worker_cache.py)."""

    def ensure_key(self) -> tuple[Path, str]:
        """(private key path, public key line), made once (0600) when there is none."""
        ...

    def public_key(self) -> str | None:
        """The public key line if the key exists; never makes one."""
        ...

    def key_path(self) -> Path: ...
    def username(self) -> str: ...
    def known_hosts_path(self, sl: Slice) -> Path: ...

    def pin_host_keys(self, sl: Slice) -> Path:
        """Write the node's known_hosts file from the host keys the API published."""
        ...

    def cached_slice(self, cloud: Cloud, name: str, *, public_key: str) -> Slice | None: ...
    def cache_slice(self, cloud: Cloud, sl: Slice, *, public_key: str) -> None: ...
    def forget_slice(self, cloud: Cloud, name: str) -> None: ...


class Ledger(Protocol):
    """This user's record of nodes and runs (tpuctl/ledger.py): what `cost` reads once a
    node is gone. `record` never raises; `read` skips what is not a well-formed event."""

    def record(self, event: LedgerEvent) -> None: ...
    def read(self) -> list[LedgerEvent]: ...


@dataclass(frozen=True)
class Ports:
    cloud: Cloud
    connect: Connect
    local: Local
    http: Http
    ledger: Ledger = field(default_factory=NullLedger)

    def in_zone(self, zone: str) -> Ports:
        """The same ports with the cloud in another zone (create's zone fallback)."""
        return dataclasses.replace(self, cloud=self.cloud.in_zone(zone))
