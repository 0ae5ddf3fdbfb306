"""Where tpuctl keeps its local files. One place, so tests can isolate them with $HOME.

Everything under ~/.tpuctl is its user's only: the directory is 0700 (keys, tokens, worker
lists, logs and the emulator's state are inside), and so is every directory tpuctl makes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


KEY_NAME = "tpuctl_ed25519"  # this user's tpuctl SSH key, in ~/.tpuctl/ssh (sshkeys.py)


def local_dir(*parts: str) -> str:
    """~/.tpuctl/PARTS as a string: the fast path (tpuctl/cli/fast/) imports no pathlib."""
    return os.path.join(os.path.expanduser("~"), ".tpuctl", *parts)


def known_hosts_file(project: str, zone: str, name: str) -> str:
    """A node's pinned host keys (sshkeys.write_known_hosts writes it; one file per node:
    addresses are reused across nodes)."""
    return local_dir("ssh", "known_hosts.d", f"{project}_{zone}_{name}")


def _path(text: str) -> Path:
    from pathlib import Path

    return Path(text)


def tpuctl_home() -> Path:
    return _path(local_dir())


def ssh_dir() -> Path:
    return _path(local_dir("ssh"))


def known_hosts_dir() -> Path:
    return _path(local_dir("ssh", "known_hosts.d"))


def emulator_dir() -> Path:
    return _path(local_dir("emulator"))


def worker_cache_dir() -> Path:
    return _path(local_dir("cache", "workers"))


def _tighten(path: Path) -> None:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not to you (uid "
                              f"{os.getuid()}): tpuctl keeps its private files in directories "
                              "of your own")
    if st.st_mode & 0o077:
        path.chmod(0o700)


def private_dir(path: Path | str) -> Path:
    """`path` as a directory only its user can enter: missing components are made 0700 (not
    with the umask's mode, as `mkdir -p` would), an existing one of ours is tightened to 0700,
    one of another user is refused (PermissionError). ~/.tpuctl itself is tightened too when
    `path` lies inside it (earlier versions left it 0755)."""
    path = _path(str(path))
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
    home = tpuctl_home()
    if path != home and path.is_relative_to(home):
        _tighten(home)
    _tighten(path)
    return path
