"""Fixtures for the emulator's API tests: an emulator with fake or real workers, a real client."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tpuctl.emulator.server import run_in_thread

FAST_DELAY = 0.05
# The bearer token of in-process emulators (a real `serve` makes a random one at each start).
TOKEN = "test-token-for-in-process-emulators"


def _ip(slot: int, index: int) -> str:
    return f"127.{slot}.{index // 250}.{index % 250 + 1}"


@dataclass(frozen=True)
class FakeWorker:
    index: int
    ip: str
    ssh_port: int
    host_key: str


class FakeWorkerHost:
    """Records calls instead of starting SSH servers: pure API tests stay fast."""

    def __init__(self, state_dir: Path, ssh_port: int) -> None:
        self.state_dir = state_dir
        self.ssh_port = ssh_port
        self.running: dict[str, list[FakeWorker]] = {}
        self.removed: list[str] = []
        self.key_fns: dict[str, Callable[[str], list[str]]] = {}

    async def start_node(
        self,
        node_id: str,
        slot: int,
        num_workers: int,
        chips_per_host: int,
        authorized_keys: Callable[[str], list[str]],
    ) -> list[FakeWorker]:
        workers = []
        for i in range(num_workers):
            digest = hashlib.sha256(f"{node_id}/{i}".encode()).digest()
            blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + digest)
            workers.append(
                FakeWorker(i, _ip(slot, i), self.ssh_port, f"ssh-ed25519 {blob.decode()}")
            )
        self.running[node_id] = workers
        self.key_fns[node_id] = authorized_keys
        return workers

    async def stop_node(self, node_id: str) -> None:
        self.running.pop(node_id, None)

    def remove_node(self, node_id: str) -> None:
        self.removed.append(node_id)

    async def close(self) -> None:
        self.running.clear()


@dataclass
class Emulator:
    endpoint: str
    state_dir: Path
    hosts: list[FakeWorkerHost]

    @property
    def host(self) -> FakeWorkerHost:
        return self.hosts[-1]


@pytest.fixture(scope="module")
def fake_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator (fake workers) per test module; tests use unique node names."""
    state_dir = tmp_path_factory.mktemp("emu")
    hosts: list[FakeWorkerHost] = []

    def factory(d: Path, port: int) -> FakeWorkerHost:
        hosts.append(FakeWorkerHost(d, port))
        return hosts[-1]

    # keys apply at once (guest-agent-delay 0): these tests read what a node accepts right
    # after a change; test_oslogin.py tests the delay itself
    with run_in_thread(state_dir, create_delay=FAST_DELAY, worker_host=factory,
                       token=TOKEN, faults={"guest-agent-delay": 0}) as endpoint:
        yield Emulator(endpoint, state_dir, hosts)


@pytest.fixture
def client(fake_emulator: Emulator) -> Any:
    from tests.conftest import tpu_client

    return tpu_client(fake_emulator.endpoint, TOKEN)


@pytest.fixture
def fast_polling() -> Any:
    """Operation polling from 20 ms instead of the client's 1 s."""
    from google.api_core import retry
    from google.api_core.future import polling

    return retry.Retry(
        predicate=polling.POLLING_PREDICATE, initial=0.02, maximum=0.1, multiplier=1.5, timeout=20
    )


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Node ids unique within a shared emulator."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"
