"""The node a fast-path command works on, from the worker cache only: its configuration
resolved as the full CLI resolves it (tpuctl/config.py, with `quick_repo_config` for a
tpuctl.yaml), this user's key checked as `sshkeys.ensure_key` checks it, and the SSH targets
the full CLI stored in the cache entry (ops/worker_cache.py). None whenever the full CLI would
do anything more: an error to report, a key to make or a directory to tighten, an entry that
is missing, old or for another key, a connection policy that is not the daemon's, targets
the full CLI would not reach the same way through the daemon (worker_cache.fast_targets)."""

from __future__ import annotations

import os
import stat

from tpuctl import config
from tpuctl.errors import TpuctlError
from tpuctl.naming import ssh_username
from tpuctl.ops import worker_cache
from tpuctl.paths import KEY_NAME, local_dir
from tpuctl.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tpuctl.cli.fast.args import Args


@record
class Node:
    name: str
    project: str
    zone: str
    identity: str  # worker_cache.identity: the daemon's pool, the cache entry's key
    entry: dict[str, Any]  # the worker cache entry (worker_cache.read_entry)
    key_path: str
    persist: float  # seconds the daemon keeps connections (0: no daemon)

    @property
    def workers(self) -> list[dict[str, Any]]:
        return list(self.entry["slice"]["workers"])

    @property
    def targets(self) -> list[dict[str, Any]]:
        return list(self.entry["targets"])  # checked by worker_cache.fast_targets in `find`


def _private(path: str) -> bool:
    """A directory `paths.private_dir` would leave as it is: ours and 0700 already."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _public_key(key_path: str) -> str | None:
    """The public key line, when `sshkeys.ensure_key` would return it without changing or
    refusing anything."""
    try:
        st = os.stat(key_path)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        if not (_private(local_dir()) and _private(os.path.dirname(key_path))):
            return None
        with open(key_path + ".pub") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def find(args: Args, *, daemon: bool = True) -> Node | None:
    """The node `args` names, answered from the worker cache; `daemon`: the command goes
    through the connection daemon (persistence must be on)."""
    try:
        cfg = config.resolve(api_endpoint=args.api_endpoint, project=args.project,
                             zone=args.zone, reader=config.quick_repo_config)
        project, zone = config.require_project_zone(cfg)
        persist = config.persist_seconds(reader=config.quick_repo_config) if daemon else 0.0
    except (TpuctlError, config.NotSimple):
        return None
    if daemon and persist <= 0:
        return None  # the full CLI connects in process
    key_path = local_dir("ssh", KEY_NAME)
    public_key = _public_key(key_path)
    if not public_key:
        return None
    identity = worker_cache.identity(cfg.endpoint.value, project, zone, args.name)
    entry = worker_cache.read_entry(identity, args.name, public_key=public_key)
    if entry is None:
        return None
    try:
        if int(entry["slice"].get("slices") or 1) > 1:
            return None  # a multislice group: its labels, aliases and flags are the full CLI's
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if worker_cache.fast_targets(entry, ssh_username()) is None:
        # another login (OS Login) or another way in (jump host, proxy command, IAP,
        # internal addresses): the full CLI reaches the workers its own way
        return None
    return Node(args.name, project, zone, identity, entry, key_path, persist)
