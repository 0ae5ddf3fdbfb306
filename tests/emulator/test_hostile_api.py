"""A hostile TPU API (an emulator whose workers report made-up addresses) through the real
CLI: `ssh`, `ssh-config` and `exec` exit 4 and run nothing here (docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import tpu_client
from tests.emulator.conftest import FAST_DELAY, TOKEN, FakeWorker, FakeWorkerHost
from tpuctl.cli.main import run as cli
from tpuctl.emulator.server import run_in_thread

PARENT = "projects/local-project/locations/local-a"
MARK = Path("/tmp") / f"tpuctl-pwned-{os.getpid()}"
HOSTILE = {  # node id -> what its only worker's address is said to be
    "dash": f"-oProxyCommand=touch {MARK}",
    "space": "127.0.0.1 -oProxyCommand=x",
    "newline": f"127.0.0.1\n  ProxyCommand touch {MARK}",
}


class HostileWorkerHost(FakeWorkerHost):
    """Real fake workers, published under made-up addresses (what a spoofed API would say)."""

    async def start_node(self, node_id: str, slot: int, num_workers: int, chips_per_host: int,
                         authorized_keys: Callable[[str], list[str]]) -> list[FakeWorker]:
        workers = await super().start_node(node_id, slot, num_workers, chips_per_host,
                                           authorized_keys)
        bad = HOSTILE[node_id.rsplit(".", 1)[-1]]
        return [FakeWorker(w.index, bad, w.ssh_port, w.host_key) for w in workers]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from google.cloud import tpu_v2

    state = tmp_path_factory.mktemp("hostile-api")
    with run_in_thread(state, create_delay=FAST_DELAY, token=TOKEN,
                       worker_host=lambda d, p: HostileWorkerHost(d, p)) as endpoint:
        client = tpu_client(endpoint, TOKEN)
        ops = [client.create_node(parent=PARENT, node_id=n, node=tpu_v2.Node(
            accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
            labels={"managed-by": "tpuctl"})) for n in HOSTILE]
        for op in ops:
            op.result(timeout=30)
        yield endpoint, state


@pytest.fixture
def env(hostile: tuple[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    endpoint, state = hostile
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", endpoint)
    monkeypatch.setenv("TPUCTL_API_TOKEN_FILE", str(state / "token"))
    return dict(os.environ)


@pytest.mark.parametrize("node", sorted(HOSTILE))
@pytest.mark.parametrize("command", [["ssh", "{}", "--print"], ["ssh-config", "{}"],
                                     ["exec", "{}", "--", "true"], ["describe", "{}"]])
def test_hostile_addresses_exit_4_and_run_nothing(env, node, command, capsys):
    assert cli([a.format(node) for a in command]) == 4
    err = capsys.readouterr()
    assert "invalid value" in err.err and "not an IP address" in err.err
    assert "ProxyCommand" not in err.out  # nothing of it reached stdout (an ssh config)
    assert not MARK.exists()


def test_a_real_tpuctl_ssh_never_executes_ssh_with_it(env):
    p = subprocess.run([sys.executable, "-m", "tpuctl", "ssh", "dash"], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 4, p.stderr
    assert not MARK.exists()


def test_list_refuses_the_hostile_answer_too(env, capsys):
    assert cli(["list"]) == 4
    assert "not an IP address" in capsys.readouterr().err
