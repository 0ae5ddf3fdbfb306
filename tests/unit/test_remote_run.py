"""The run supervisor's helpers end with the run: the real launch.sh/run.sh/stop.sh under bash
on this machine (no lingering `sleep`, `stop` not held up to its KILL by the watchdog)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.unit.test_remote_frames import _script
from tpuctl.ops.secrets import render_env
from tpuctl.remote import frame


def _members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _launch(home: Path, command: str, limit: str) -> Path:
    payload = frame(command.encode() + b"\0" + render_env({"TPUCTL_RUN_ID": "r1"}))
    r = _script(home, "launch", "start", "r1", "0", ".", "-", "-", "0", "0", limit,
                stdin=payload)
    assert r.returncode == 0, r.stderr
    return home / ".tpuctl" / "runs" / "r1"


def _wait(pred, timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_nothing_of_a_run_lingers_after_it_finishes(tmp_path: Path) -> None:
    run = _launch(tmp_path, "true", "300")  # a watchdog armed for 5 minutes
    pgid = int((run / "pgid").read_text())
    _wait(lambda: (run / "exit_code").exists())
    assert (run / "exit_code").read_text() == "0\n"
    _wait(lambda: _members(pgid) == [], timeout=2.0)  # no watchdog, heartbeat or sleep left


def test_stop_is_not_held_up_by_the_watchdog_and_says_terminated(tmp_path: Path) -> None:
    run = _launch(tmp_path, "sleep 300", "300")
    pgid = int((run / "pgid").read_text())
    t0 = time.monotonic()
    r = _script(tmp_path, "stop", "r1", "10")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert b"result=terminated" in r.stdout and b"exit_code=143" in r.stdout, r.stdout
    assert took < 5, f"stop waited {took:.1f}s (the grace is 10 s)"
    assert _members(pgid) == []


def test_the_watchdog_still_stops_a_run_past_its_timeout(tmp_path: Path) -> None:
    run = _launch(tmp_path, "sleep 300", "1")
    pgid = int((run / "pgid").read_text())
    _wait(lambda: (run / "exit_code").exists())
    assert (run / "timed_out").exists()
    assert (run / "exit_code").read_text() == "143\n"
    _wait(lambda: _members(pgid) == [], timeout=3.0)
    assert os.path.exists(run / "heartbeat")
