"""`--dry-run`: the same operations on recording adapters, chosen by tpuctl/wiring.py.

A dry run changes nothing: API changes and worker scripts are recorded in a `Transcript`
(`tpuctl.dryrun.transcript`) instead of sent, this machine's tpuctl files are read but never
written (no SSH key is made, no host key pinned, no worker list cached, no line added to
the cost ledger), and nothing connects
to a worker. Reads of the API are real, except for `create` and `up`, which need no API at
all: they plan as for a node that does not exist yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from tpuctl.cloud.base import Cloud
from tpuctl.dryrun.cloud import RecordingCloud
from tpuctl.dryrun.transcript import Transcript
from tpuctl.dryrun.workers import RecordingWorkers
from tpuctl.errors import UsageError
from tpuctl.ledger import ReadOnlyLedger
from tpuctl.model import Access, Slice
from tpuctl.ops.ports import HttpReply, Local, Ports
from tpuctl.workers.base import SshTarget, Workers

# the key line a create would carry when this user has no tpuctl key yet (it is made then)
NEW_KEY = "ssh-ed25519 <the key tpuctl makes at ~/.tpuctl/ssh/tpuctl_ed25519.pub> tpuctl"


class ReadOnlyLocal:
    """This machine's tpuctl files, read (when `reads`) and never written."""

    def __init__(self, real: Local, *, reads: bool) -> None:
        self._real = real
        self._reads = reads

    def ensure_key(self) -> tuple[Path, str]:
        return self._real.key_path(), self._real.public_key() or NEW_KEY

    def public_key(self) -> str | None:
        return self._real.public_key()

    def key_path(self) -> Path:
        return self._real.key_path()

    def username(self) -> str:
        return self._real.username()

    def known_hosts_path(self, sl: Slice) -> Path:
        return self._real.known_hosts_path(sl)

    def pin_host_keys(self, sl: Slice) -> Path:
        return self._real.known_hosts_path(sl)

    def cached_access(self, cloud: Cloud, name: str, *, public_key: str) -> Access | None:
        return self._real.cached_access(cloud, name, public_key=public_key) if self._reads \
            else None

    def cache_access(self, cloud: Cloud, access: Access, *, public_key: str,
                     targets: Sequence[SshTarget] = ()) -> None:
        return None

    def key_change(self, cloud: Cloud, name: str) -> float:
        return 0.0

    def forget_slice(self, cloud: Cloud, name: str) -> None:
        return None


class _NoHttp:
    async def post_json(self, url: str, body: dict[str, object], *, timeout: float
                        ) -> HttpReply:
        raise UsageError("a dry run sends no request to a server", hint="run it without "
                         "--dry-run")


def recording_ports(real: Ports, transcript: Transcript, *, read_api: bool) -> Ports:
    transcript.reads_api = read_api

    def connect(targets: Sequence[SshTarget], *, key_path: Path, pool: str, shared: bool,
                connect_timeout: float, connect_attempts: int, max_concurrency: int
                ) -> Workers:
        return RecordingWorkers(targets, transcript)

    return dataclasses.replace(
        real, cloud=cast(Cloud, RecordingCloud(real.cloud, transcript, read_api=read_api)),
        connect=connect, local=ReadOnlyLocal(real.local, reads=read_api), http=_NoHttp(),
        ledger=ReadOnlyLedger(real.ledger))


__all__ = ["Transcript", "recording_ports"]
