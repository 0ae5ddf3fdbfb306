"""`follow.sh` (tail --follow, `up`'s tail) ends when the run ends even while its supervisor
is a zombie nobody has reaped yet. An orphaned supervisor stays one until PID 1 reaps it: at
once under systemd, about 2 s later under this sandbox's init, never under a container's
shell. `tail --pid` and `kill -0` count a zombie as alive, so following used to last until
the reaping, or forever."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tpuctl import remote

SCRIPTS = Path(remote.__file__).parent


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_follow_returns_while_the_supervisor_is_an_unreaped_zombie(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_dir = home / ".tpuctl" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "cmd").write_text("sleep 0.5; echo last line\n")
    (run_dir / "env").write_text("")
    env = {**os.environ, "HOME": str(home)}
    # this test is the supervisor's parent and does not reap it until the end: a zombie
    supervisor = subprocess.Popen(
        ["bash", str(SCRIPTS / "run.sh"), str(run_dir), "0", str(tmp_path), "-", "-"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (run_dir / "pid").exists():
            assert time.monotonic() < deadline, "the supervisor never wrote its pid"
            time.sleep(0.02)
        follow = subprocess.run(["bash", str(SCRIPTS / "follow.sh"), "r1", "0", "0", "1"],
                                capture_output=True, text=True, env=env, timeout=20)
        assert follow.returncode == 0, follow.stderr
        assert follow.stdout == "last line\n"
        assert "exit_code=0 alive=0" in follow.stderr, follow.stderr
        # the case this is about: the supervisor had ended and was not reaped yet (read
        # before any poll(), which would reap it)
        assert _state(supervisor.pid) == "Z"
    finally:
        supervisor.wait(timeout=30)
