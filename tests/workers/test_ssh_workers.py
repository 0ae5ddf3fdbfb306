"""SshWorkers against real emulated workers (asyncssh servers running real bash)."""

from __future__ import annotations

import os
import shlex
import time
from collections import defaultdict
from pathlib import Path

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpuctl.workers.base import SshTarget, WorkerResult
from tpuctl.workers.ssh import SshWorkers

from .conftest import USER, Env, make_key


def _workers(env: Env, targets: list[SshTarget] | None = None, **kw: object) -> SshWorkers:
    return SshWorkers(env.targets() if targets is None else targets, key_path=env.key.path, **kw)  # type: ignore[arg-type]


def _run(env: Env, sw: SshWorkers, command: str, **kw: object) -> list[WorkerResult]:
    return env.lt.call(sw.run(command, **kw))  # type: ignore[arg-type]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def sw(env: Env):  # one reused client for the module: most tests need no fresh connections
    client = _workers(env)
    yield client
    env.lt.call(client.close())


def test_output_is_attributed_per_worker_and_in_order(env: Env, sw: SshWorkers) -> None:
    lines: dict[tuple[int, str], list[str]] = defaultdict(list)
    results = _run(
        env,
        sw,
        'echo "out $TPU_WORKER_ID"; echo "err $TPU_WORKER_ID" >&2; printf "tail-$TPU_WORKER_ID"',
        on_output=lambda i, s, line: lines[(i, s)].append(line),
    )
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert all(r.ok and r.exit_code == 0 for r in results)
    for i in range(4):
        # the partial last line (no trailing newline) is still delivered
        assert lines[(i, "stdout")] == [f"out {i}", f"tail-{i}"]
        assert lines[(i, "stderr")] == [f"err {i}"]


def test_one_failing_worker_does_not_hide_the_others(env: Env, sw: SshWorkers) -> None:
    results = _run(env, sw, 'if [ "$TPU_WORKER_ID" = 2 ]; then exit 7; fi; echo fine', capture=True)
    assert [r.exit_code for r in results] == [0, 0, 7, 0]
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[0].stdout == "fine\n" and results[2].stdout == ""
    assert all(r.error is None for r in results)


def test_indices_select_workers(env: Env, sw: SshWorkers) -> None:
    results = _run(env, sw, "echo $TPU_WORKER_ID", indices=[3, 1, 3], capture=True)
    assert [(r.index, r.stdout) for r in results] == [(1, "1\n"), (3, "3\n")]


def test_exit_signal_is_reported(env: Env, sw: SshWorkers) -> None:
    [r] = _run(env, sw, "kill -TERM $$", indices=[0])
    assert r.exit_code == 143 and r.error == "killed by signal TERM" and not r.ok


HOSTILE = [
    "it's",
    'say "hi"',
    "$(touch /tmp/pwned-tpuctl)",
    "`id`",
    "a; rm -rf ~",
    "line1\nline2",
    "ünïcødé ✓ 日本",
    "-n",
    "--help",
    "-e",
    "",
    " spaced  out ",
    "\\",
    "*",
    "$HOME",
    "%s%d",
    "a\tb",
    "'\"'\"'",
    "!!",
    "#comment",
]


def _printf_args(env: Env, sw: SshWorkers, args: list[str]) -> list[str]:
    command = shlex.join(["printf", "%s\\0", *args])
    [r] = _run(env, sw, command, indices=[0], capture=True)
    assert r.ok, r
    return r.stdout.split("\0")[:-1]


def test_hostile_arguments_arrive_byte_exact(env: Env, sw: SshWorkers) -> None:
    assert _printf_args(env, sw, HOSTILE) == HOSTILE
    assert not os.path.exists("/tmp/pwned-tpuctl")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
        ),
        min_size=1,
        max_size=5,
    )
)
def test_hostile_arguments_round_trip_property(env: Env, sw: SshWorkers, args: list[str]) -> None:
    assert _printf_args(env, sw, args) == args


def test_jax_env_and_distinct_homes(env: Env, sw: SshWorkers) -> None:
    cmd = 'echo "$XLA_FLAGS|$JAX_PLATFORMS|$HOME|$PWD|$USER|$TPUCTL_EMULATOR|$TPUCTL_EMULATOR_NODE"'
    results = _run(env, sw, cmd, capture=True)
    homes = set()
    for r in results:
        xla, plat, home, pwd, user, emu, node = r.stdout.strip().split("|")
        assert xla == "--xla_force_host_platform_device_count=4"
        assert plat == "cpu" and user == USER and emu == "1"
        assert node == f"t4@{env.tmp / 'state'}"  # the node, and which emulator it is in
        assert home == pwd and home.endswith(f"/nodes/t4/w{r.index}/home")
        homes.add(home)
    assert len(homes) == 4


def test_client_env_is_allowlisted(env: Env) -> None:
    w = env.workers[0]

    async def go() -> str:
        async with asyncssh.connect(
            w.ip,
            w.ssh_port,
            username=USER,
            client_keys=[str(env.key.path)],
            known_hosts=([asyncssh.import_public_key(w.host_key)], [], []),
            agent_path=None,
        ) as conn:
            r = await conn.run(
                'echo "$LC_TPUCTL|$LANG|${EVIL-unset}|$JAX_PLATFORMS"',
                env={"LC_TPUCTL": "x", "LANG": "en_US.UTF-8", "EVIL": "y", "JAX_PLATFORMS": "tpu"},
            )
            return str(r.stdout)

    assert env.lt.call(go()).strip() == "x|en_US.UTF-8|unset|cpu"


def test_stdin_is_delivered_then_eof(env: Env, sw: SshWorkers) -> None:
    secret = b"TOKEN=s3cr3t 'quoted' $(not run)\n"
    results = _run(env, sw, "cat", stdin=secret, capture=True)
    assert [r.stdout.encode() for r in results] == [secret] * 4
    big = os.urandom(2 * 1024 * 1024)  # more than any window: exercises flow control
    results = _run(env, sw, "sha256sum", stdin=big, capture=True, indices=[1, 2])
    import hashlib

    assert {r.stdout.split()[0] for r in results} == {hashlib.sha256(big).hexdigest()}
    # no stdin: EOF at once, so a reader of stdin doesn't hang
    [r] = _run(env, sw, "cat; echo done", indices=[0], capture=True, timeout=10)
    assert r.stdout == "done\n"


def test_large_output_streams(env: Env, sw: SshWorkers) -> None:
    count = 0

    def on_output(i: int, s: str, line: str) -> None:
        nonlocal count
        count += 1

    [r] = _run(env, sw, "seq 1 200000", indices=[0], on_output=on_output)
    assert r.ok and count == 200000


def test_connections_are_reused(env: Env) -> None:
    client = _workers(env)
    before = [env.host.connections_accepted("t4", i) for i in range(4)]
    try:
        assert all(r.ok for r in _run(env, client, "true"))
        assert all(r.ok for r in _run(env, client, "true"))
        assert all(r.ok for r in _run(env, client, "true", indices=[2]))
        assert client.connections_opened == 4
        after = [env.host.connections_accepted("t4", i) for i in range(4)]
        assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]
    finally:
        env.lt.call(client.close())


def test_wrong_key_is_refused_plainly_and_not_retried(env: Env, tmp_path: Path) -> None:
    other = make_key(tmp_path / "other")
    client = SshWorkers(env.targets(), key_path=other.path, connect_attempts=3)
    before = env.host.connections_accepted("t4", 0)
    try:
        results = _run(env, client, "true")
    finally:
        env.lt.call(client.close())
    for r in results:
        assert r.exit_code is None and not r.ok
        assert r.error is not None and "permission denied (publickey)" in r.error
    assert env.host.connections_accepted("t4", 0) == before + 1  # no retry


def test_unknown_user_is_refused(env: Env) -> None:
    client = _workers(env, env.targets(user="mallory"))
    try:
        [r] = _run(env, client, "true", indices=[0])
    finally:
        env.lt.call(client.close())
    assert r.error is not None and "permission denied (publickey)" in r.error


def test_authorized_keys_are_read_at_each_login(env: Env, tmp_path: Path) -> None:
    late = make_key(tmp_path / "late")
    client = SshWorkers(env.targets(), key_path=late.path)
    try:
        [r] = _run(env, client, "true", indices=[0])
        assert r.error is not None and "permission denied" in r.error
        env.keys["tester"].append(f"{late.public.split()[0]} {late.public.split()[1]} comment")
        [r] = _run(env, client, "true", indices=[0])
        assert r.ok
    finally:
        env.keys["tester"].pop()
        env.lt.call(client.close())


def test_host_key_mismatch_is_refused_plainly(env: Env) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    wrong = impostor.export_public_key("openssh").decode().strip()
    targets = env.targets()
    targets[1] = SshTarget(1, targets[1].host, targets[1].port, USER, wrong)
    client = _workers(env, targets)
    before = env.host.connections_accepted("t4", 1)
    try:
        results = _run(env, client, "true")
    finally:
        env.lt.call(client.close())
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error is not None and "host key mismatch" in results[1].error
    assert env.host.connections_accepted("t4", 1) == before + 1  # no retry


def test_unpinned_target_accepts_the_offered_key(env: Env) -> None:
    client = _workers(env, env.targets(pin=False))
    try:
        assert all(r.ok for r in _run(env, client, "true"))
    finally:
        env.lt.call(client.close())


def test_timeout_on_one_worker_returns_quickly_and_kills_it(env: Env, sw: SshWorkers) -> None:
    pids: list[int] = []

    def on_output(i: int, s: str, line: str) -> None:
        if i == 1:
            pids.append(int(line))

    cmd = 'if [ "$TPU_WORKER_ID" = 1 ]; then sleep 1000 & echo $!; wait; else echo done; fi'
    t0 = time.monotonic()
    results = _run(env, sw, cmd, timeout=1.5, on_output=on_output)
    elapsed = time.monotonic() - t0
    assert elapsed < 5
    assert [r.ok for r in results] == [True, False, True, True]
    r = results[1]
    assert r.timed_out and r.exit_code is None and r.error == "timed out after 1.5s"
    assert pids and _wait_dead(pids[0]), "the timed-out command's process survived"
    # the connection survives a timed-out command and is reused
    assert _run(env, sw, "true", indices=[1])[0].ok


def test_unreachable_worker_fails_alone_then_recovers(env: Env) -> None:
    client = _workers(env, connect_timeout=2, connect_attempts=2)
    try:
        env.lt.call(env.host.set_reachable("t4", 3, False))
        t0 = time.monotonic()
        results = _run(env, client, "true")
        assert time.monotonic() - t0 < 5
        assert [r.ok for r in results] == [True, True, True, False]
        assert results[3].exit_code is None and results[3].error
        env.lt.call(env.host.set_reachable("t4", 3, True))
        assert _run(env, client, "true", indices=[3])[0].ok
    finally:
        env.lt.call(env.host.set_reachable("t4", 3, True))
        env.lt.call(client.close())


def test_dropped_connection_is_reopened(env: Env) -> None:
    client = _workers(env)
    try:
        assert _run(env, client, "true", indices=[0])[0].ok
        env.host.drop_connections("t4", 0)
        time.sleep(0.2)
        assert _run(env, client, "true", indices=[0])[0].ok
        assert client.connections_opened == 2
    finally:
        env.lt.call(client.close())


def test_silent_server_hits_connect_timeout_and_run_timeout(env: Env) -> None:
    """A worker that accepts TCP but never speaks SSH (a wedged VM) fails alone, in time."""
    import asyncio

    from .conftest import free_port

    port = free_port()
    held: list[asyncio.StreamWriter] = []

    async def serve() -> asyncio.AbstractServer:
        async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            held.append(w)

        return await asyncio.start_server(hold, "127.0.0.1", port)

    server = env.lt.call(serve())
    targets = [*env.targets()[:1], SshTarget(1, "127.0.0.1", port, USER, env.workers[1].host_key)]
    client = _workers(env, targets, connect_timeout=0.4, connect_attempts=2)
    try:
        t0 = time.monotonic()
        r0, r1 = _run(env, client, "true")
        assert time.monotonic() - t0 < 3
        assert r0.ok and not r1.timed_out and r1.exit_code is None
        assert r1.error is not None and "connect timed out" in r1.error
        r0, r1 = _run(env, client, "true", timeout=0.3)
        assert r0.ok and r1.timed_out and r1.error == "timed out after 0.3s"
    finally:
        env.lt.call(client.close())

        async def stop() -> None:
            for w in held:
                w.close()
            server.close()

        env.lt.call(stop())
