"""The sglang-jax stand-in reproduces what readiness checks must see: the ready line, a
dead peer that leaves /health at 200 but fails /health_generate, and a missing peer that
hangs rank 0 at "Begins to synchronize"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("sgl_server.py")
READY = "The server is fired up and ready to roll!"


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def dist_port() -> int:
    """A port P with P+5 and P+6 free too (rank 0 binds all three)."""
    for _ in range(50):
        p = free_ports(1)[0]
        if p + 6 > 65535:
            continue
        try:
            held = []
            for q in (p, p + 5, p + 6):
                s = socket.socket()
                s.bind(("127.0.0.1", q))
                held.append(s)
            for s in held:
                s.close()
            return p
        except OSError:
            for s in held:
                s.close()
    raise RuntimeError("no free dist port")


@dataclass
class Cluster:
    model: Path
    nnodes: int
    tp: int
    dp: int
    tmp: Path
    env: dict[str, str]
    dist: int = field(default_factory=dist_port)
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = free_ports(self.nnodes)

    def start(self, rank: int) -> None:
        argv = [sys.executable, str(SERVER), "--model-path", str(self.model),
                "--tp-size", str(self.tp), "--dp-size", str(self.dp),
                "--host", "127.0.0.1", "--port", str(self.ports[rank]),
                "--device", "cpu", "--attention-backend", "native", "--load-format", "dummy",
                "--some-future-flag", "x"]
        if self.nnodes > 1:
            argv += ["--nnodes", str(self.nnodes), "--node-rank", str(rank),
                     "--dist-init-addr", f"127.0.0.1:{self.dist}"]
        log = open(self.log_path(rank), "wb")  # closed with the process
        self.procs[rank] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)

    def log_path(self, rank: int) -> Path:
        return self.tmp / f"rank{rank}.log"

    def log(self, rank: int) -> str:
        return self.log_path(rank).read_text(errors="replace")

    def wait_for(self, rank: int, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(rank):
                return True
            if self.procs[rank].poll() is not None:
                return text in self.log(rank)
            time.sleep(0.05)
        return False

    def url(self, rank: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[rank]}{path}"

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def get(url: str, timeout: float = 10.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def post(url: str, body: dict[str, object], timeout: float = 10.0) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "qwen-like"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_size": 3584,
        "num_hidden_layers": 28, "intermediate_size": 18944, "vocab_size": 152064}))
    return d


@pytest.fixture
def cluster_factory(tmp_path: Path, model_dir: Path) -> Iterator[object]:
    made: list[Cluster] = []
    env = {**os.environ, "SGLANG_HEALTH_CHECK_TIMEOUT": "2",
           "SGL_STANDIN_GENERATE_TIMEOUT": "3", "PYTHONUNBUFFERED": "1"}

    def make(nnodes: int, tp: int, dp: int, **extra_env: str) -> Cluster:
        c = Cluster(model_dir, nnodes, tp, dp, tmp_path, {**env, **extra_env})
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def test_four_ranks_ready_then_a_dead_peer_breaks_generation_not_health(cluster_factory):
    c = cluster_factory(nnodes=4, tp=16, dp=4)  # Qwen2.5-7B-like on a v6e-16: tp/dp = 4
    for rank in range(4):
        c.start(rank)
    assert c.wait_for(0, READY, 20), c.log(0)
    log0 = c.log(0)
    assert "[Publisher 0] Begins to synchronize, wait 3 Subscribers" in log0
    assert "[Publisher 0] Succeeds to synchronize!" in log0
    for rank in (1, 2, 3):
        assert c.wait_for(rank, "Starting dummy health check server", 10), c.log(rank)
        assert f"[Subscriber {rank}] Begins to synchronize" in c.log(rank)
        assert get(c.url(rank, "/health")) == 200
        assert get(c.url(rank, "/health_generate")) == 200

    assert get(c.url(0, "/health")) == 200
    assert get(c.url(0, "/health_generate")) == 200
    status, body = post(c.url(0, "/generate"),
                        {"text": "Hello", "sampling_params": {"max_new_tokens": 4}})
    assert status == 200 and isinstance(body, dict)
    assert body["meta_info"]["completion_tokens"] == 4 and len(body["text"].split()) == 4
    status, batch = post(c.url(0, "/generate"), {"text": ["a", "b"], "sampling_params": {}})
    assert status == 200 and isinstance(batch, list) and len(batch) == 2

    c.procs[2].send_signal(signal.SIGKILL)
    c.procs[2].wait(timeout=5)
    assert get(c.url(0, "/health")) == 200  # the HTTP front end does not notice
    t0 = time.monotonic()
    assert get(c.url(0, "/health_generate")) == 503
    assert time.monotonic() - t0 >= 1.5  # only after its own timeout
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):  # /generate hangs (the client gives up first)
        urllib.request.urlopen(urllib.request.Request(
            c.url(0, "/generate"), data=b'{"text": "x"}'), timeout=1.0)
    assert time.monotonic() - t0 < 3
    assert get(c.url(1, "/health_generate")) == 200  # ranks > 0 always say 200
    assert c.procs[0].poll() is None


def test_missing_peer_hangs_rank0_before_ready(cluster_factory):
    c = cluster_factory(nnodes=4, tp=16, dp=4)
    for rank in (0, 1, 3):  # rank 2 never starts
        c.start(rank)
    assert c.wait_for(0, "Begins to synchronize, wait 3 Subscribers", 10), c.log(0)
    assert c.wait_for(0, "receives 2 READY signal", 10), c.log(0)
    assert not c.wait_for(0, READY, 3)
    log0 = c.log(0)
    assert "Succeeds to synchronize!" not in log0
    assert c.procs[0].poll() is None  # hung, not crashed
    with pytest.raises(OSError):  # rank 0's HTTP server is not up yet
        urllib.request.urlopen(c.url(0, "/health"), timeout=1)


def test_field_failure_tp16_dp1_for_28_heads_is_rejected(cluster_factory):
    c = cluster_factory(nnodes=1, tp=16, dp=1)
    c.start(0)
    assert c.procs[0].wait(timeout=10) == 1
    assert ("AssertionError: Number of attention heads (28) must be divisible by tensor "
            "parallel size (16). Got remainder: 12") in c.log(0)


def test_single_node_needs_no_dist_flags_and_old_semantics_crash_on_dp(cluster_factory):
    c = cluster_factory(nnodes=1, tp=8, dp=4)
    c.start(0)
    assert c.wait_for(0, READY, 10), c.log(0)
    assert get(c.url(0, "/health_generate")) == 200

    old = cluster_factory(nnodes=1, tp=4, dp=2, SGL_STANDIN_SEMANTICS="old")
    old.start(0)
    assert old.procs[0].wait(timeout=10) == 1
    assert "NameError" in old.log(0)


def test_tp_not_multiple_of_nnodes_is_rejected(cluster_factory):
    c = cluster_factory(nnodes=4, tp=6, dp=1)
    c.start(0)
    assert c.procs[0].wait(timeout=10) == 1
    assert "tp_size must be divisible by number of nodes" in c.log(0)
