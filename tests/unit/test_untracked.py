"""A commit is what gets synced: untracked files are named, changes to tracked ones refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tpuctl.errors import UsageError
from tpuctl.ops.sync import plan


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print(1)\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one")
    return root


def test_untracked_files_are_named_not_refused(repo: Path):
    (repo / ".env").write_text("HF_TOKEN=x\n")
    (repo / "tpuctl-logs").mkdir()
    (repo / "tpuctl-logs" / "w0.log").write_text("x\n")
    state = plan(repo, "HEAD", "bundle", allow_dirty=False)
    assert state.dirty == () and set(state.untracked) == {".env", "tpuctl-logs/"}


def test_changes_to_tracked_files_are_still_refused(repo: Path):
    (repo / ".env").write_text("HF_TOKEN=x\n")
    (repo / "train.py").write_text("print(2)\n")
    with pytest.raises(UsageError, match=r"uncommitted changes \(train.py\)"):
        plan(repo, "HEAD", "bundle", allow_dirty=False)
    assert plan(repo, "HEAD", "bundle", allow_dirty=True).dirty == ("train.py",)
