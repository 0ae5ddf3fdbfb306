"""MuxWorkers (client) against the daemon's request handler, over a real unix socket, to real
emulated workers: what crosses the socket arrives exactly as SshWorkers gives it in process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpuctl.errors import UsageError
from tpuctl.workers import mux, muxd
from tpuctl.workers.base import SshTarget, WorkerResult
from tpuctl.workers.ssh import SshWorkers

from .conftest import Env


@pytest.fixture(scope="module")
def daemon(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[muxd.Daemon]:
    home = tmp_path_factory.mktemp("mh")
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))
    mux.mux_dir().mkdir(parents=True, mode=0o700)
    d: muxd.Daemon | None = None

    async def start() -> asyncio.AbstractServer:
        nonlocal d
        d = muxd.Daemon(persist=60)
        return await asyncio.start_unix_server(d.handle, path=str(mux.socket_path()),
                                               limit=mux.FRAME_LIMIT)

    server = env.lt.call(start())
    assert d is not None
    yield d
    server.close()
    env.lt.call(d.close())
    mp.undo()


def client(env: Env, targets: list[SshTarget] | None = None) -> mux.MuxWorkers:
    return mux.MuxWorkers(env.targets() if targets is None else targets,
                          key_path=env.key.path, pool="test|t4", persist=60,
                          connect_timeout=5, connect_attempts=1)


def run(coro):
    return asyncio.run(coro)


def test_results_output_and_stdin_cross_the_socket_exactly(env: Env, daemon: muxd.Daemon
                                                           ) -> None:
    data = bytes(range(256)) * 64 + b"\n\xff\xfe tail"
    lines: list[tuple[int, str, str]] = []
    c = client(env)
    got = run(c.run("cat; echo; echo err >&2; exit 3", indices=[0, 2], stdin=data,
                    capture=True, on_output=lambda i, s, line: lines.append((i, s, line))))
    assert c.via_daemon == 1

    async def in_process() -> list[WorkerResult]:
        sw = SshWorkers(env.targets(), key_path=env.key.path)
        try:
            return await sw.run("cat; echo; echo err >&2; exit 3", indices=[0, 2], stdin=data,
                                capture=True)
        finally:
            await sw.close()

    ref = run(in_process())
    assert [(r.index, r.exit_code, r.stdout) for r in got] == \
        [(r.index, r.exit_code, r.stdout) for r in ref]
    assert (0, "stderr", "err") in lines and (2, "stderr", "err") in lines
    assert daemon.status()["nodes"] == 1


def test_the_daemons_errors_are_the_same_typed_errors(env: Env, daemon: muxd.Daemon) -> None:
    with pytest.raises(UsageError, match="no such worker"):
        run(client(env).run("true", indices=[9]))


def test_an_unreachable_worker_is_reported_unreached(env: Env, daemon: muxd.Daemon) -> None:
    t = env.targets()[0]
    dead = SshTarget(t.index, t.host, 1, t.username, t.host_key)  # nothing listens on port 1
    c = mux.MuxWorkers([dead], key_path=env.key.path, pool="test|dead", persist=60,
                       connect_timeout=2, connect_attempts=1)
    (r,) = run(c.run("true"))
    assert c.via_daemon == 1
    assert r.exit_code is None and r.unreached and r.error


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
               max_size=80))
def test_hostile_output_lines_arrive_intact(env: Env, daemon: muxd.Daemon, text: str) -> None:
    lines: list[str] = []
    run(client(env).run("cat", indices=[1], stdin=text.encode() + b"\n",
                        on_output=lambda i, s, line: lines.append(line)))
    assert lines == [text]


def test_a_peer_that_is_not_a_daemon_means_in_process(env: Env, short_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever answers without acknowledging (garbage, a closed socket) costs nothing: the
    command runs in process once, and a daemon is started for the next command."""
    monkeypatch.setenv("HOME", str(short_home))
    mux.mux_dir().mkdir(parents=True)
    started: list[float] = []
    monkeypatch.setattr(mux, "start_daemon", started.append)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(mux.socket_path()))
    srv.listen()
    srv.settimeout(10)

    async def go() -> list[int | None]:
        c = client(env)
        task = asyncio.ensure_future(c.run("exit 7", indices=[3]))
        peer, _ = await asyncio.get_running_loop().run_in_executor(None, srv.accept)
        peer.sendall(b'{"nonsense": 1}\n')
        peer.close()
        got = await task
        assert c.via_daemon == 0
        await c.close()
        return [r.exit_code for r in got]

    assert run(go()) == [7]
    assert started == [60]
    srv.close()


def test_a_home_too_long_for_a_socket_runs_in_process(env: Env, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    long_home = tmp_path / ("h" * 120)
    long_home.mkdir()
    monkeypatch.setenv("HOME", str(long_home))
    started: list[float] = []
    monkeypatch.setattr(mux, "start_daemon", started.append)
    assert mux.usable_socket_path() is None

    async def go() -> list[int | None]:
        c = client(env)
        try:
            return [r.exit_code for r in await c.run("true", indices=[0])]
        finally:
            await c.close()

    assert run(go()) == [0]
    assert started == []  # no daemon that could not bind


def test_only_the_same_user_is_served() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)

    class W:
        def get_extra_info(self, name: str) -> object:
            return a if name == "socket" else None

    assert muxd._same_user(W())  # type: ignore[arg-type]
    a.close()
    b.close()


def test_a_client_that_reads_slowly_holds_the_worker_back(env: Env, daemon: muxd.Daemon
                                                          ) -> None:
    """The daemon buffers no more than a socket's worth for a slow client: the worker's
    command blocks on its output (SSH flow control) until the client reads."""
    import json
    import time

    marker = f"done-{time.monotonic_ns()}"
    # 400 lines of 100,000 bytes: quick to make and to relay, so only backpressure stops it
    command = f"yes $(head -c 99999 /dev/zero | tr '\\0' x) | head -n 400; touch ~/{marker}"
    req = client(env).request(command, indices=[0], timeout=60, stdin=None, stream=True,
                              capture=False)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(mux.socket_path()))
        s.sendall(mux.encode(req))
        time.sleep(2.0)  # read nothing: 40 MB of output wait on the worker, not in the daemon
        done = worker0_has(env, marker)
        assert not done, "the worker finished writing 40 MB to a client that read nothing"
        s.settimeout(60)
        buf = bytearray()
        while not buf.endswith(b"\n") or b'"results"' not in buf[-4096:]:
            chunk = s.recv(1 << 20)
            assert chunk, "daemon closed before the results"
            buf += chunk
    lines = buf.splitlines()
    assert lines[0] + b"\n" == mux.ACK
    assert len(lines) - 2 == 400  # every line arrived, then the results
    assert json.loads(lines[-1])["results"][0]["exit_code"] == 0
    assert worker0_has(env, marker)


def worker0_has(env: Env, marker: str) -> bool:
    """Does worker 0's home hold `marker` (the command's last act)?"""
    async def look() -> bool:
        sw = SshWorkers(env.targets(), key_path=env.key.path)
        try:
            (r,) = await sw.run(f"test -e ~/{marker}", indices=[0])
        finally:
            await sw.close()
        return r.exit_code == 0

    return bool(run(look()))
