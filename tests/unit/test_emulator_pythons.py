"""The interpreters emulated workers are offered: real binaries only (a pyenv shim for another
version fails and stops uv's search), pyenv's versions behind its shims, one per version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tpuctl.emulator.pythons import local_interpreters, offer_interpreters


def _binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF" + b"\0" * 60)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/usr/bin/env bash\nexec pyenv exec "$0" "$@"\n')
    path.chmod(0o755)
    return path


def test_real_binaries_win_pyenv_versions_behind_shims_count(tmp_path: Path):
    shims = tmp_path / "pyenv" / "shims"
    _script(shims / "python3.12")
    _script(shims / "python3.13")
    v12 = _binary(tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12")
    _binary(tmp_path / "pyenv" / "versions" / "3.12.9" / "bin" / "python3.12")  # later: 2nd
    system = _binary(tmp_path / "usr" / "bin" / "python3.11")
    _binary(tmp_path / "usr" / "bin" / "python3")  # unversioned names are not offered
    _script(tmp_path / "usr" / "bin" / "python3.13")  # a wrapper script is no interpreter
    linked = tmp_path / "links" / "python3.10"
    linked.parent.mkdir()
    linked.symlink_to(_binary(tmp_path / "opt" / "py310"))
    path = os.pathsep.join(map(str, (shims, tmp_path / "usr" / "bin", linked.parent,
                                     tmp_path / "absent")))
    assert local_interpreters(path) == {"3.12": v12, "3.11": system, "3.10": linked}


def test_offered_links_are_kept_when_right_and_replaced_or_dropped_otherwise(tmp_path: Path):
    a = _binary(tmp_path / "a" / "python3.12")
    bin_dir = tmp_path / "offer"
    assert offer_interpreters(bin_dir, str(a.parent)) == {"3.12": a}
    link = bin_dir / "python3.12"
    assert os.readlink(link) == str(a)
    before = link.lstat().st_ino
    offer_interpreters(bin_dir, str(a.parent))
    assert link.lstat().st_ino == before  # untouched: a worker may be running through it
    b = _binary(tmp_path / "b" / "python3.12")
    c = _binary(tmp_path / "b" / "python3.13")
    offer_interpreters(bin_dir, str(b.parent))
    assert {p.name: os.readlink(p) for p in bin_dir.iterdir()} == {
        "python3.12": str(b), "python3.13": str(c)}
    offer_interpreters(bin_dir, str(tmp_path / "none"))
    assert list(bin_dir.iterdir()) == []


def test_nodes_starting_at_once_offer_their_links_without_tripping_on_each_other(
        tmp_path: Path):
    """A multislice request starts every node at once (a thread each): no call may rename or
    delete another's link in the making (it failed the whole group before)."""
    from concurrent.futures import ThreadPoolExecutor

    a = _binary(tmp_path / "a" / "python3.12")
    b = _binary(tmp_path / "a" / "python3.11")
    for round_ in range(200):
        bin_dir = tmp_path / f"offer{round_}"
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(offer_interpreters, [bin_dir] * 16, [str(a.parent)] * 16))
        assert all(g == {"3.12": a, "3.11": b} for g in got)
        assert sorted(p.name for p in bin_dir.iterdir()) == ["python3.11", "python3.12"]
