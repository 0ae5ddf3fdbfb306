"""tpuctl/filedigest.py: a remembered digest is the one computed from the files as they are
now, whatever happened to them or to the remembered value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tpuctl import remote
from tpuctl.digest import sha256_hex
from tpuctl.filedigest import remembered


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".tpuctl" / "cache").mkdir(parents=True, mode=0o700)
    d = tmp_path / "code"
    d.mkdir()
    (d / "a.py").write_text("one")
    (d / "b.py").write_text("two")
    return d


def _digest(d: Path, calls: list[int]) -> str:
    calls.append(1)
    return sha256_hex((d / "a.py").read_bytes() + (d / "b.py").read_bytes())[:12]


def test_unchanged_files_are_not_read_again(files: Path) -> None:
    calls: list[int] = []
    first = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    again = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    assert first == again == _digest(files, []) and len(calls) == 1


def test_a_rewritten_file_is_hashed_again(files: Path) -> None:
    calls: list[int] = []
    before = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    st = os.stat(files / "a.py")
    (files / "a.py").write_text("ONE")  # same size, and the old mtime put back
    os.utime(files / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns))
    after = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    assert after != before and after == _digest(files, []) and len(calls) == 2


@pytest.mark.parametrize("saved", ["x; rm -rf ~", "", "ABCDEF", "a" * 65])
def test_a_remembered_value_that_is_not_hex_is_never_used(files: Path, saved: str) -> None:
    calls: list[int] = []
    remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    path = Path(os.environ["HOME"]) / ".tpuctl" / "cache" / "k.digest"
    sig = path.read_text().split()[0]
    path.write_text(f"{sig} {saved}\n")
    value = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, calls))
    assert value == _digest(files, []) and len(calls) == 2


def test_without_a_cache_directory_nothing_is_written(files: Path) -> None:
    cache = Path(os.environ["HOME"]) / ".tpuctl" / "cache"
    cache.rmdir()
    value = remembered("k", str(files), ["a.py", "b.py"], lambda: _digest(files, []))
    assert value == _digest(files, []) and not cache.exists()


def test_the_scripts_hash_is_their_content_hash(files: Path) -> None:
    remote._HASH.clear()
    remembered_hash = remote.scripts_hash()
    remote._HASH.clear()
    assert remote.scripts_hash() == remembered_hash
    digest = remote.sha256()
    for name, data in remote._script_files():
        digest.update(name.encode() + b"\0" + data + b"\0")
    assert remembered_hash == digest.hexdigest()[:16]
