"""WorkerHost itself: node life cycle, process cleanup, and real OpenSSH clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tpuctl.emulator.hosts import WorkerHost
from tpuctl.emulator.vms import worker_ip
from tpuctl.workers.base import SshTarget
from tpuctl.workers.openssh import known_hosts_line, ssh_option_args
from tpuctl.workers.ssh import SshWorkers

from .conftest import USER, Env, free_port
from .test_ssh_workers import _alive, _run, _wait_dead

SSH = shutil.which("ssh")
needs_ssh = pytest.mark.skipif(SSH is None, reason="no OpenSSH client (ssh) on PATH")


def test_worker_ip_layout() -> None:
    assert worker_ip(3, 0) == "127.3.0.1"
    assert worker_ip(3, 249) == "127.3.0.250"
    assert worker_ip(3, 250) == "127.3.1.1"
    with pytest.raises(ValueError):
        worker_ip(0, 0)


def _daemon_cmd() -> str:
    # what launch will do later: a job that outlives its SSH session in its own session
    return (
        "setsid nohup sh -c 'echo $$ > \"$HOME/daemon.pid\"; exec sleep 1000' "
        ">/dev/null 2>&1 </dev/null & "
        'for _ in $(seq 100); do [ -s "$HOME/daemon.pid" ] && break; sleep 0.05; done; '
        'cat "$HOME/daemon.pid"; rm "$HOME/daemon.pid"'
    )


def test_stop_node_kills_detached_processes_of_that_node_only(env: Env) -> None:
    workers = env.lt.call(env.host.start_node("stopme", 202, 2, 1, env.authorized))
    victim_client = SshWorkers(env.targets(workers), key_path=env.key.path)
    bystander_client = SshWorkers(env.targets(), key_path=env.key.path)
    bystander = 0
    try:
        results = _run(env, victim_client, _daemon_cmd(), capture=True)
        assert all(r.ok for r in results), results
        victims = [int(r.stdout) for r in results]
        [r] = _run(env, bystander_client, _daemon_cmd(), capture=True, indices=[0])
        bystander = int(r.stdout)
        assert all(_alive(p) for p in [*victims, bystander])
        # a detached process left its SSH session: only the environ marker can find it
        assert all(os.getsid(p) != os.getpgid(os.getpid()) for p in victims)

        t0 = time.monotonic()
        env.lt.call(env.host.stop_node("stopme"))
        assert time.monotonic() - t0 < 3
        assert all(_wait_dead(p) for p in victims)
        assert _alive(bystander), "stop_node killed another node's process"

        # the node's listeners are closed
        [r] = _run(env, victim_client, "true", indices=[0])
        assert not r.ok and r.error
    finally:
        if bystander and _alive(bystander):
            os.kill(bystander, 15)  # the one process this test started outside the node
        env.lt.call(victim_client.close())
        env.lt.call(bystander_client.close())


def test_stop_node_kills_a_group_member_whose_environment_hides_the_marker(env: Env) -> None:
    """sglang-jax's schedulers retitle themselves (setproctitle), which overwrites what /proc
    shows of their environment: such a process goes with its marked process group."""
    workers = env.lt.call(env.host.start_node("retitled", 204, 1, 1, env.authorized))
    client = SshWorkers(env.targets(workers), key_path=env.key.path)
    hidden = 0
    try:
        cmd = ("setsid nohup sh -c 'env -i sleep 1000 & echo $! > \"$HOME/hidden.pid\"; "
               "exec sleep 1000' >/dev/null 2>&1 </dev/null & "
               'for _ in $(seq 100); do [ -s "$HOME/hidden.pid" ] && break; sleep 0.05; done; '
               'cat "$HOME/hidden.pid"')
        [r] = _run(env, client, cmd, capture=True)
        assert r.ok, r
        hidden = int(r.stdout)
        assert _alive(hidden)
        assert b"TPUCTL_EMULATOR_NODE" not in Path(f"/proc/{hidden}/environ").read_bytes()
        env.lt.call(env.host.stop_node("retitled"))
        assert _wait_dead(hidden)
    finally:
        if hidden and _alive(hidden):
            os.kill(hidden, 9)
        env.lt.call(client.close())


def test_stop_start_keeps_host_keys_and_home_remove_deletes(env: Env) -> None:
    first = env.lt.call(env.host.start_node("cycle", 203, 2, 2, env.authorized))
    client = SshWorkers(env.targets(first), key_path=env.key.path)
    try:
        assert _run(env, client, "echo kept > ~/mark")[0].ok
        assert env.lt.call(env.host.start_node("cycle", 203, 2, 2, env.authorized)) == first
        env.lt.call(env.host.stop_node("cycle"))
        env.lt.call(client.close())
        second = env.lt.call(env.host.start_node("cycle", 203, 2, 2, env.authorized))
        assert second == first  # same addresses and host keys: pins stay valid
        client = SshWorkers(env.targets(second), key_path=env.key.path)
        [r] = _run(env, client, "cat ~/mark", indices=[0], capture=True)
        assert r.stdout == "kept\n"
        with pytest.raises(RuntimeError):
            env.host.remove_node("cycle")
    finally:
        env.lt.call(client.close())
        env.lt.call(env.host.stop_node("cycle"))
    node_dir = env.tmp / "state" / "nodes" / "cycle"
    key_file = node_dir / "w0" / "ssh_host_ed25519_key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    env.host.remove_node("cycle")
    assert not node_dir.exists()


def _openssh_argv(env: Env, target: SshTarget, tmp: Path) -> list[str]:
    known = tmp / "known_hosts"
    known.write_text(known_hosts_line(target) + "\n")
    return [str(SSH), *ssh_option_args(target, env.key.path, known), "-o", "BatchMode=yes"]


def test_known_hosts_line_format() -> None:
    t = SshTarget(0, "10.0.0.2", 22, "u", "ssh-ed25519 AAAAblob comment")
    assert known_hosts_line(t) == "10.0.0.2 ssh-ed25519 AAAAblob"
    t2 = SshTarget(1, "127.1.0.2", 2222, "u", "ssh-ed25519 AAAAblob")
    assert known_hosts_line(t2) == "[127.1.0.2]:2222 ssh-ed25519 AAAAblob"
    args = ssh_option_args(t2, Path("/k"), Path("/kh"))
    assert args[:6] == ["-p", "2222", "-l", "u", "-i", "/k"]
    assert "StrictHostKeyChecking=yes" in args and "UserKnownHostsFile=/kh" in args


@needs_ssh
def test_openssh_client_runs_a_command(env: Env, tmp_path: Path) -> None:
    target = env.targets()[2]
    proc = subprocess.run(
        [*_openssh_argv(env, target, tmp_path), target.host, "echo hello $TPU_WORKER_ID; exit 3"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "hello 2\n"
    proc = subprocess.run(
        [*_openssh_argv(env, target, tmp_path), target.host, "true"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr


@needs_ssh
def test_openssh_client_refuses_a_wrong_host_key(env: Env, tmp_path: Path) -> None:
    real = env.targets()[0]
    other = env.workers[1].host_key  # a genuine key, of another worker
    target = SshTarget(0, real.host, real.port, USER, other)
    proc = subprocess.run(
        [*_openssh_argv(env, target, tmp_path), target.host, "true"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in proc.stderr or "verification failed" in proc.stderr


@needs_ssh
def test_interactive_pty_shell_via_openssh(env: Env, tmp_path: Path) -> None:
    """Interactive: OpenSSH on a pexpect pty asks for a pty and a shell (bash -i)."""
    pexpect = pytest.importorskip("pexpect")
    target = env.targets()[1]
    argv = _openssh_argv(env, target, tmp_path)
    child = pexpect.spawn(
        argv[0], [*argv[1:], "-tt", target.host], timeout=15, encoding="utf-8", dimensions=(30, 90)
    )
    try:
        child.expect(r"[#$] ")  # the prompt: bash -i is reading from the pty
        child.sendline("echo marker-$((6*7))-$TPU_WORKER_ID")
        child.expect("marker-42-1")
        child.sendline("stty size; tty")
        child.expect("30 90")
        child.expect("/dev/pts/")
        child.setwinsize(40, 120)  # window-change request reaches the pty
        time.sleep(0.3)
        child.sendline("stty size")
        child.expect("40 120")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4


def test_another_emulators_node_of_the_same_name_never_kills_ours(env: Env,
                                                                  tmp_path: Path) -> None:
    """Two emulators on one machine (two users, two CI jobs, a test beside the demo) that both
    have a node `t4`: stopping theirs leaves our detached job alone."""
    other = WorkerHost(tmp_path / "other-state", free_port(), kill_grace=0.5)
    env.lt.call(other.start_node("t4", 209, 1, 1, env.authorized))
    client = SshWorkers(env.targets(), key_path=env.key.path)
    pid = 0
    try:
        [r] = _run(env, client, _daemon_cmd(), capture=True, indices=[0])
        pid = int(r.stdout)
        env.lt.call(other.stop_node("t4"))
        time.sleep(1.0)  # past the other emulator's kill grace: its SIGKILL round is done
        assert _alive(pid), "another emulator's stop_node killed our node's job"
    finally:
        if pid and _alive(pid):
            os.kill(pid, 15)
        env.lt.call(other.close())
        env.lt.call(client.close())
