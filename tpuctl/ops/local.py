"""The `Local` port on this machine's files: ~/.tpuctl/ssh (key, known_hosts.d) and the
worker cache. `--dry-run` wires a read-only variant instead (tpuctl/dryrun/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tpuctl import sshkeys
from tpuctl.cloud.base import Cloud
from tpuctl.model import Access, Slice
from tpuctl.ops import worker_cache
from tpuctl.workers.base import SshTarget


class FileLocal:
    def ensure_key(self) -> tuple[Path, str]:
        return sshkeys.ensure_key()

    def public_key(self) -> str | None:
        path = sshkeys.key_path()
        pub = path.with_suffix(".pub")
        return pub.read_text().strip() if path.is_file() and pub.is_file() else None

    def key_path(self) -> Path:
        return sshkeys.key_path()

    def username(self) -> str:
        return sshkeys.ssh_username()

    def known_hosts_path(self, sl: Slice) -> Path:
        return sshkeys.known_hosts_path(sl)

    def pin_host_keys(self, sl: Slice) -> Path:
        return sshkeys.write_known_hosts(sl)

    def cached_access(self, cloud: Cloud, name: str, *, public_key: str) -> Access | None:
        return worker_cache.load(cloud, name, public_key=public_key)

    def cache_access(self, cloud: Cloud, access: Access, *, public_key: str,
                     targets: Sequence[SshTarget] = ()) -> None:
        worker_cache.store(cloud, access, public_key=public_key, targets=targets)

    def key_change(self, cloud: Cloud, name: str) -> float:
        return worker_cache.key_change(cloud, name)

    def forget_slice(self, cloud: Cloud, name: str) -> None:
        worker_cache.forget(cloud, name)
