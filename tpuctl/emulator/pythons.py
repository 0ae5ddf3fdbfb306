"""The Python interpreters an emulated worker's image offers, from this machine, no download.

On a real TPU VM, `uv python install 3.12` (or `uv venv --python 3.12`) downloads a managed
CPython and, since uv 0.8, puts a versioned `python3.12` on the PATH. The emulator cannot
download (only package indexes are reachable), so it offers what this machine already has:
one directory of `python3.N` links to real interpreters (pyenv's versions behind its shims
included), put first on every worker's PATH, with uv's Python downloads turned off. A version
this machine lacks then fails at once with uv's own message, as on an image without network.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

_VERSIONED = re.compile(r"^python3\.(\d{1,2})$")
_ELF = b"\x7fELF"


def _is_binary(path: Path) -> bool:
    """A real interpreter, not a wrapper script such as a pyenv shim (which fails for any
    version that is not pyenv's global one, and makes uv stop searching)."""
    try:
        with open(path.resolve(), "rb") as f:
            return f.read(4) == _ELF
    except OSError:
        return False


def _candidate_dirs(path_env: str) -> list[Path]:
    """PATH's directories, each followed by the versions behind it when it holds pyenv shims."""
    dirs: list[Path] = []
    for entry in path_env.split(os.pathsep):
        if not entry:
            continue
        d = Path(entry)
        dirs.append(d)
        if d.name == "shims" and (d.parent / "versions").is_dir():
            dirs += sorted((d.parent / "versions").glob("*/bin"))
    return dirs


def local_interpreters(path_env: str | None = None) -> dict[str, Path]:
    """{"3.12": /path/to/python3.12, ...}: the first real interpreter of each minor version."""
    found: dict[str, Path] = {}
    for d in _candidate_dirs(os.environ.get("PATH", os.defpath) if path_env is None
                             else path_env):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            m = _VERSIONED.match(name)
            version = f"3.{m.group(1)}" if m else ""
            if m and version not in found and _is_binary(d / name):
                found[version] = d / name
    return found


def offer_interpreters(bin_dir: Path, path_env: str | None = None) -> dict[str, Path]:
    """Keep `bin_dir` holding one `python3.N` link per interpreter of this machine. Links that
    are already right stay untouched (a worker may be running through them); others are
    replaced atomically."""
    bin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = local_interpreters(path_env)
    wanted = {f"python{v}": str(target) for v, target in found.items()}
    for old in bin_dir.iterdir():
        # (a dot name is another call's link in the making: nodes start concurrently)
        if old.is_symlink() and old.name not in wanted and not old.name.startswith("."):
            old.unlink(missing_ok=True)
    for name, target in wanted.items():
        link = bin_dir / name
        if link.is_symlink() and os.readlink(link) == target:
            continue
        tmp = bin_dir / f".{name}.{uuid.uuid4().hex}.tmp"  # one per call: no two collide
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return found
