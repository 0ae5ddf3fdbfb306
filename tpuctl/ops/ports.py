"""What operations work through, bundled: the cloud, the workers, this machine's tpuctl files,
an HTTP client and the cost ledger. `tpuctl/wiring.py` chooses the adapters (GCP or an
emulator endpoint, the connection daemon or direct SSH, recording ones for `--dry-run`); ops
never import one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tpuctl.cloud.base import Cloud
from tpuctl.ledger import LedgerEvent, NullLedger
from tpuctl.model import Access, Slice
from tpuctl.ops.route import SshRoute
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

    def cached_access(self, cloud: Cloud, name: str, *, public_key: str) -> Access | None:
        """The node's workers and login as `ensure_access` left them, while fresh."""
        ...

    def cache_access(self, cloud: Cloud, access: Access, *, public_key: str,
                     targets: Sequence[SshTarget] = ()) -> None:
        """Remember the node's workers and login, and the SSH targets made of them (the
        fast path's, tpuctl/cli/fast/)."""
        ...

    def forget_slice(self, cloud: Cloud, name: str) -> None: ...

    def key_change(self, cloud: Cloud, name: str) -> float:
        """When tpuctl last changed the node's keys (unix time, 0 if unknown), however old
        the cached worker list is."""
        ...


def _quiet(line: str) -> None:
    """A Notice that shows nothing (tests' fakes; the wiring writes to stderr)."""


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
    # how this machine reaches workers (flags and tpuctl.yaml; ops/route.py)
    route: SshRoute = SshRoute()
    # one line for the user while an operation waits on something slow (stderr)
    notice: Callable[[str], None] = _quiet
    # seconds to wait for a READY node's workers to register (tpuctl.yaml `worker_wait`)
    worker_wait: float = 60.0

    def in_zone(self, zone: str) -> Ports:
        """The same ports with the cloud in another zone (create's zone fallback)."""
        return dataclasses.replace(self, cloud=self.cloud.in_zone(zone))
