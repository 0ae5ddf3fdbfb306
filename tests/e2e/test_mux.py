"""The connection daemon (persist_connections) through the real CLI, emulator and SSH.

One HOME and one node for the module; every test starts from no daemon and leaves none.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator, wait_until

pytestmark = pytest.mark.e2e

PARENT = "projects/local-project/locations/local-a"
PERSIST = {"TPUCTL_PERSIST_CONNECTIONS": "60"}


@pytest.fixture(scope="module")
def mcli(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("muxhome")
    yield Cli(home=home, endpoint=emulator.endpoint, token_file=emulator.token_file)


@pytest.fixture(scope="module")
def node(mcli: Cli) -> Iterator[str]:
    name = f"m-{uuid.uuid4().hex[:8]}"
    r = mcli("create", name, "--type", "v6e-16")
    assert r.returncode == 0, r.stderr
    yield name
    mcli("delete", name, "--yes")


def _sleeping(secs: str) -> int:
    """How many `sleep SECS` processes run (the emulated workers' share this machine)."""
    r = subprocess.run(["pgrep", "-f", f"^sleep {secs}$"], capture_output=True, text=True)
    return len(r.stdout.split())


def _daemons(home: Path) -> list[int]:
    """Live daemon processes whose HOME is `home` (from their environment)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tpuctl.workers.muxd" in cmd and f"HOME={home}".encode() in env:
            found.append(int(d.name))
    return found


@pytest.fixture
def fresh(mcli: Cli) -> Iterator[Cli]:
    """No daemon before the test; `tpuctl mux stop` after, and then none is left."""
    _on(mcli, "mux", "stop")
    wait_until(lambda: _daemons(mcli.home), lambda pids: not pids)
    yield mcli
    r = _on(mcli, "mux", "stop")
    assert r.returncode == 0
    wait_until(lambda: _daemons(mcli.home), lambda pids: not pids)


def _on(cli: Cli, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`tpuctl ARGS` with persistence on (unless `env` says otherwise)."""
    return cli(*args, env=cli.env(**(PERSIST | env)))


def _exec(cli: Cli, node: str, *cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _on(cli, "exec", node, "--", *cmd, **env)


def _exec_in_background(cli: Cli, node: str, *cmd: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tpuctl", "exec", node, "--", *cmd],
                            env=cli.env(**PERSIST), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cli.home)


def _status(cli: Cli) -> dict[str, object]:
    r = _on(cli, "mux", "status", "--json")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def _connections_seen(cli: Cli, node: str) -> dict[str, str]:
    """worker -> `client_ip client_port ...` of the SSH connection its command came over."""
    r = _exec(cli, node, "bash", "-c", 'echo "$SSH_CONNECTION"')
    assert r.returncode == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def test_commands_after_the_first_reuse_the_daemons_connections(fresh: Cli, node: str) -> None:
    first = _connections_seen(fresh, node)  # in process; starts the daemon
    wait_until(lambda: _status(fresh)["running"], bool)
    second = _connections_seen(fresh, node)  # through the daemon: its own new connections
    third = _connections_seen(fresh, node)  # the same connections again
    assert len(first) == len(second) == len(third) == 4
    assert third == second  # same client ports: no new connection to any worker
    assert set(second.values()).isdisjoint(first.values())  # the first closed its own
    st = _status(fresh)
    assert st["nodes"] == 1 and st["connections"] == 4
    # a command through the daemon imports no SSH library (nor google-cloud), by the fast
    # path (tpuctl/cli/fast/: not even typer) or by the full CLI
    for fast, marker in (("1", "tpuctl.cli.fast.daemon"), ("0", "typer")):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "tpuctl", "exec", node,
                            "--", "true"], capture_output=True, text=True, timeout=60,
                           env=fresh.env(**PERSIST, TPUCTL_FAST_PATH=fast),
                           stdin=subprocess.DEVNULL, cwd=fresh.home)
        assert r.returncode == 0 and "4/4 workers ok" in r.stderr
        assert marker in r.stderr  # (the import log is really there, and that path ran)
        assert "asyncssh" not in r.stderr and "google.cloud" not in r.stderr
        assert fast == "0" or "typer" not in r.stderr
    mux = fresh.home / ".tpuctl" / "mux"
    assert stat.S_IMODE(mux.stat().st_mode) == 0o700
    sockets = list(mux.glob("*.sock"))
    assert len(sockets) == 1 and stat.S_IMODE(sockets[0].stat().st_mode) == 0o600


def test_output_exit_codes_and_worker_selection_are_the_same_through_the_daemon(
        fresh: Cli, node: str) -> None:
    script = 'echo "out $TPU_WORKER_ID"; echo "err $TPU_WORKER_ID" >&2; exit $((TPU_WORKER_ID+3))'
    inproc = fresh("exec", node, "-w", "1-2", "--json", "--", "bash", "-c", script,
                   env=fresh.env(TPUCTL_PERSIST_CONNECTIONS="0"))
    _exec(fresh, node, "true")  # starts the daemon
    wait_until(lambda: _status(fresh)["running"], bool)
    for _ in range(2):  # new daemon connections, then kept ones
        r = _on(fresh, "exec", node, "-w", "1-2", "--json", "--", "bash", "-c", script)
        assert r.returncode == inproc.returncode == 4
        assert sorted(r.stderr.splitlines()[:4]) == sorted(inproc.stderr.splitlines()[:4]) == \
            ["[w1] err 1", "[w1] out 1", "[w2] err 2", "[w2] out 2"]
        got = json.loads(r.stdout)
        assert [(w["worker"], w["exit_code"]) for w in got["workers"]] == [(1, 4), (2, 5)]
    bad = _on(fresh, "exec", node, "-w", "7", "--", "true")
    assert bad.returncode == 2 and "worker 7 does not exist" in bad.stderr


def test_ctrl_c_through_the_daemon_stops_the_remote_command(fresh: Cli, node: str) -> None:
    _exec(fresh, node, "true")
    wait_until(lambda: _status(fresh)["running"], bool)
    secs = f"{300 + uuid.uuid4().int % 1000}.25"  # a sleep only this test runs
    proc = _exec_in_background(fresh, node, "sleep", secs)
    wait_until(lambda: _sleeping(secs), lambda n: n == 4, timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    wait_until(lambda: _sleeping(secs), lambda n: n == 0, timeout=15)  # gone everywhere
    assert _status(fresh)["busy"] == 0  # and the daemon is free again
    assert _exec(fresh, node, "true").returncode == 0


def test_a_daemon_killed_mid_command_fails_it_clearly_and_the_next_one_works(
        fresh: Cli, node: str) -> None:
    _exec(fresh, node, "true")
    pid = wait_until(lambda: _status(fresh).get("pid"), bool)
    secs = f"20.{uuid.uuid4().int % 1000:03d}"  # a sleep only this test runs
    proc = _exec_in_background(fresh, node, "sleep", secs)
    wait_until(lambda: _status(fresh).get("busy"), lambda n: n == 1, timeout=30)
    wait_until(lambda: _sleeping(secs), lambda n: n == 4, timeout=30)  # running everywhere
    os.kill(int(pid), signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 255, err
    assert "connection daemon exited during the command" in err
    r = _exec(fresh, node, "true")  # a stale socket: in process, and a new daemon starts
    assert r.returncode == 0, r.stderr
    wait_until(lambda: _status(fresh).get("pid"), lambda p: p not in (None, pid))


def test_the_daemon_exits_after_its_idle_time_and_logs_no_command(fresh: Cli, node: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    short = {"TPUCTL_PERSIST_CONNECTIONS": "2", "HF_TOKEN": marker}
    assert _exec(fresh, node, "true", **short).returncode == 0
    (pid,) = wait_until(lambda: _daemons(fresh.home), bool)
    # the shell's environment stays with the command: a token exported there is not inherited
    assert marker.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    assert _exec(fresh, node, "echo", marker, **short).returncode == 0
    wait_until(lambda: _daemons(fresh.home), lambda pids: not pids, timeout=20)
    mux = fresh.home / ".tpuctl" / "mux"
    assert not list(mux.glob("*.sock")) and not list(mux.glob("*.pid"))
    log = (mux / "mux.log").read_text()
    assert "started" in log and "stopped" in log
    assert marker not in log and node not in log


def test_off_means_no_daemon(fresh: Cli, node: str) -> None:
    for _ in range(2):
        r = _exec(fresh, node, "true", TPUCTL_PERSIST_CONNECTIONS="0")
        assert r.returncode == 0
    # no wait needed: a command starts its daemon (Popen, which returns once the child has
    # exec'd) before it exits, so one started by these commands would be listed already
    assert not _daemons(fresh.home)
    assert not list((fresh.home / ".tpuctl" / "mux").glob("*.sock"))
    r = fresh("mux", "status", env=fresh.env(TPUCTL_PERSIST_CONNECTIONS="0"))
    assert "persistence off" in r.stdout


def test_a_node_preempted_under_kept_connections_exits_6(fresh: Cli, emulator: Emulator) -> None:
    name = f"m-{uuid.uuid4().hex[:8]}"
    assert fresh("create", name, "--type", "v6e-16", "--spot").returncode == 0
    try:
        _exec(fresh, name, "true")
        wait_until(lambda: _status(fresh)["running"], bool)
        assert _exec(fresh, name, "true").returncode == 0  # the daemon holds 4 connections
        emulator.admin("POST", f"{PARENT}/nodes/{name}:preempt")
        t0 = time.monotonic()
        r = _exec(fresh, name, "true")
        assert r.returncode == 6, r.stderr
        assert "PREEMPTED" in r.stderr
        assert time.monotonic() - t0 < 15
    finally:
        fresh("delete", name, "--yes")


def test_a_wedged_daemon_is_bypassed_and_never_runs_the_command_late(fresh: Cli, node: str
                                                                     ) -> None:
    _exec(fresh, node, "true")
    pid = int(wait_until(lambda: _status(fresh).get("pid"), bool))
    count = f"count-{uuid.uuid4().hex[:8]}"
    os.kill(pid, signal.SIGSTOP)  # accepts connections (the kernel's backlog), answers nothing
    try:
        t0 = time.monotonic()
        r = _on(fresh, "exec", node, "-w", "0", "--", "bash", "-c", f"echo x >> ~/{count}")
        elapsed = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 0, r.stderr
    assert "did not answer within 5s; running in process" in r.stderr
    assert 5 <= elapsed < 30
    time.sleep(1.5)  # the daemon, running again, reads the old request: it must not run it
    got = _on(fresh, "exec", node, "-w", "0", "--", "bash", "-c", f"cat ~/{count}")
    assert got.stdout.split() == ["[w0]", "x"], got.stdout


def test_status_and_stop_through_the_daemon(fresh: Cli, node: str) -> None:
    run = f"r{uuid.uuid4().hex[:6]}"
    r = fresh("launch", node, "--run-id", run, "--", "sleep", "300")  # never via the daemon
    assert r.returncode == 0, r.stderr
    try:
        plain = fresh("status", node, run, "--json", env=fresh.env(TPUCTL_PERSIST_CONNECTIONS="0"))
        assert plain.returncode == 0, plain.stderr
        _exec(fresh, node, "true")  # starts the daemon
        wait_until(lambda: _status(fresh)["running"], bool)
        via = _on(fresh, "status", node, run, "--json")
        assert via.returncode == 0, via.stderr
        states = [(w["worker"], w["state"]) for w in json.loads(via.stdout)["workers"]]
        assert states == [(w["worker"], w["state"]) for w in json.loads(plain.stdout)["workers"]]
        assert states == [(i, "running") for i in range(4)]
        assert _status(fresh)["connections"] == 4  # status used the kept connections
    finally:
        stopped = _on(fresh, "stop", node, run, "--grace", "2")
    assert stopped.returncode == 0, stopped.stderr
    after = _on(fresh, "status", node, run, "--json")
    assert {w["state"] for w in json.loads(after.stdout)["workers"]} != {"running"}
