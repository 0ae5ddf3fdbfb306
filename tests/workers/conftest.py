"""Fixtures: a WorkerHost on a private event-loop thread, a client key, a 4-worker node.

The loop runs in its own thread so blocking clients (OpenSSH, pexpect) can talk to the
emulated workers from the test thread while the servers keep serving.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from tpuctl.emulator.hosts import WorkerHost
from tpuctl.emulator.vms import EmulatedWorker
from tpuctl.workers.base import SshTarget

T = TypeVar("T")
USER = "tester"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop in a daemon thread; `call` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class ClientKey:
    path: Path
    public: str  # "ssh-ed25519 AAAA... comment"


def make_key(path: Path) -> ClientKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="tester@tpuctl-tests")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    public = key.export_public_key("openssh").decode().strip()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return ClientKey(path, public)


@dataclass
class Env:
    lt: LoopThread
    host: WorkerHost
    key: ClientKey
    tmp: Path
    workers: list[EmulatedWorker]  # node "t4", 4 workers, 4 chips each
    keys: dict[str, list[str]]  # username -> authorized key lines (mutable, read at each auth)

    def authorized(self, username: str) -> list[str]:
        return list(self.keys.get(username, []))

    def targets(
        self, workers: Sequence[EmulatedWorker] | None = None, *, user: str = USER, pin: bool = True
    ) -> list[SshTarget]:
        return [
            SshTarget(w.index, w.ip, w.ssh_port, user, w.host_key if pin else None)
            for w in (self.workers if workers is None else workers)
        ]


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("workers")
    lt = LoopThread()
    host = WorkerHost(tmp / "state", free_port(), kill_grace=0.5)
    key = make_key(tmp / "id_ed25519")
    e = Env(lt, host, key, tmp, [], {USER: ["# a comment line", key.public]})
    e.workers = lt.call(host.start_node("t4", 201, 4, 4, e.authorized))
    try:
        yield e
    finally:
        lt.call(host.close())
        lt.stop()
