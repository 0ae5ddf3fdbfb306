"""Worker scripts never signal a process group that merely reuses a finished run's pgid.

Runs the real remote/*.sh under bash on this machine (they are plain scripts), with a run
directory whose recorded group id now belongs to an unrelated session leader.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REMOTE = Path(__file__).resolve().parents[2] / "tpuctl" / "remote"


def _start_of(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[19]


@pytest.fixture
def stranger() -> subprocess.Popen[bytes]:
    """An unrelated session leader: pid == pgid, like every process the emulator spawns."""
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield p
    p.kill()
    p.wait()


def _run_dir(home: Path, pgid: int, start: str | None) -> Path:
    d = home / ".tpuctl" / "runs" / "r1"
    d.mkdir(parents=True)
    (d / "pgid").write_text(f"{pgid}\n")
    if start is not None:
        (d / "pgid_start").write_text(f"{start}\n")
    (home / ".tpuctl" / "runs" / "latest").write_text("r1\n")
    return d


def _script(home: Path, name: str, *args: str) -> str:
    env = {"HOME": str(home), "PATH": os.environ["PATH"],
           "TPUCTL_LIBTPU_LOCKFILE": str(home / "lockfile")}
    p = subprocess.run(["bash", str(REMOTE / f"{name}.sh"), *args], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_stop_leaves_a_group_that_reused_the_runs_pgid_alone(tmp_path: Path,
                                                             stranger: subprocess.Popen[bytes]
                                                             ) -> None:
    start = _start_of(stranger.pid)
    _run_dir(tmp_path, stranger.pid, str(int(start) - 1))  # our leader started earlier
    out = _script(tmp_path, "stop", "r1", "1")
    assert "result=not-running" in out
    time.sleep(0.2)
    assert stranger.poll() is None  # not signalled
    assert "state=dead" in _script(tmp_path, "status", "r1", "0")


def test_stop_still_stops_the_runs_own_group(tmp_path: Path,
                                             stranger: subprocess.Popen[bytes]) -> None:
    _run_dir(tmp_path, stranger.pid, _start_of(stranger.pid))
    assert "state=running" in _script(tmp_path, "status", "r1", "0")
    out = _script(tmp_path, "stop", "r1", "1")
    assert "result=terminated" in out
    assert stranger.wait(timeout=10) == -signal.SIGTERM


def test_runs_from_before_the_start_time_was_recorded_are_still_stoppable(
        tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    _run_dir(tmp_path, stranger.pid, None)
    assert "result=terminated" in _script(tmp_path, "stop", "r1", "1")
    assert stranger.wait(timeout=10) == -signal.SIGTERM
