"""The `Local` port on this machine's files: ~/.tpuctl/ssh (key, known_hosts.d) and the
worker cache. `--dry-run` wires a read-only variant instead (tpuctl/dryrun/)."""

from __future__ import annotations

from pathlib import Path

from tpuctl import sshkeys
from tpuctl.cloud.base import Cloud
from tpuctl.model import Slice
from tpuctl.ops import worker_cache


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

    def cached_slice(self, cloud: Cloud, name: str, *, public_key: str) -> Slice | None:
        return worker_cache.load(cloud, name, public_key=public_key)

    def cache_slice(self, cloud: Cloud, sl: Slice, *, public_key: str) -> None:
        from tpuctl.ops.access import ssh_targets

        worker_cache.store(cloud, sl, public_key=public_key, targets=ssh_targets(self, sl))

    def forget_slice(self, cloud: Cloud, name: str) -> None:
        worker_cache.forget(cloud, name)
