"""status.sh, run for real under bash on this machine: every field of its line in each state a
run can be in, from builtins where it can (it runs on every worker on every `status`)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REMOTE = Path(__file__).resolve().parents[2] / "tpuctl" / "remote"


def _status(home: Path, run: str = "r1") -> dict[str, str]:
    p = subprocess.run(["bash", str(REMOTE / "status.sh"), run, "0"], capture_output=True,
                       text=True, timeout=30, env={"HOME": str(home), "PATH": os.environ["PATH"]})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.count("\n") == 1
    return dict(kv.split("=", 1) for kv in p.stdout.split())


def _run(home: Path, **files: str) -> Path:
    d = home / ".tpuctl" / "runs" / "r1"
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text)
    (home / ".tpuctl" / "runs" / "latest").write_text("r1")  # no newline: read all the same
    return d


@pytest.fixture
def orphaned_group() -> Iterator[int]:
    """A process group whose leader has exited while a member lives on."""
    p = subprocess.Popen(["bash", "-c", "sleep 60 & echo $!"], start_new_session=True,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    child = int(p.stdout.readline())
    p.wait()
    yield p.pid
    os.kill(child, 9)


def test_an_exited_run(tmp_path: Path) -> None:
    now = int(time.time())
    _run(tmp_path, exit_code="3\n", ended_at="123\n", heartbeat=f"{now - 4}\n", pid="77\n",
         started_at="2026-01-01T00:00:00Z\n", stopped="", timed_out="",
         env="export A=1\nexport TPUCTL_SERVE_URL='http://10.0.0.2:30000'\n",
         **{"worker0.log": "a\nb\nc\n"})
    st = _status(tmp_path, "-")
    assert st == {"run": "r1", "state": "exited", "exit_code": "3", "pid": "77", "pgid": "0",
                  "heartbeat_age": st["heartbeat_age"], "started_at": "2026-01-01T00:00:00Z",
                  "log_lines": "3", "stopped": "1", "serve_url": "http://10.0.0.2:30000",
                  "timed_out": "1", "ended_at": "123"}
    assert 3 <= int(st["heartbeat_age"]) <= 10


def test_a_dead_run_and_a_missing_one(tmp_path: Path) -> None:
    _run(tmp_path, pgid="999999999\n", heartbeat="7")
    st = _status(tmp_path)
    assert (st["state"], st["exit_code"], st["ended_at"], st["log_lines"], st["serve_url"],
            st["pid"], st["started_at"]) == ("dead", "-", "7", "0", "-", "-", "-")
    assert _status(tmp_path, "r2") == {"run": "r2", "state": "missing"}


def test_a_group_whose_leader_exited_is_still_running(tmp_path: Path,
                                                      orphaned_group: int) -> None:
    _run(tmp_path, pgid=f"{orphaned_group}\n")
    assert _status(tmp_path)["state"] == "running"


def test_a_live_leader_is_running(tmp_path: Path) -> None:
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _run(tmp_path, pgid=f"{p.pid}\n")
        assert _status(tmp_path)["state"] == "running"
    finally:
        p.kill()
        p.wait()
