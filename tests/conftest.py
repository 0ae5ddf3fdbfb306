"""Shared fixtures: a real emulator process and the real `tpuctl` entry point.

Every CLI call runs `python -m tpuctl` in a subprocess with its own HOME (so the SSH key,
known_hosts and config are isolated), no stdin, and the emulator's endpoint in the env.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# google-auth must never probe the GCE metadata server (a non-loopback address) in tests.
os.environ["NO_GCE_CHECK"] = "True"
# In-process operations connect themselves: no connection daemon started by a test run
# (tests/e2e/test_mux.py turns it on where it is the subject).
os.environ["TPUCTL_PERSIST_CONNECTIONS"] = "0"


# The suite runs on 3 pytest-xdist workers (scripts/test.sh: `-n 3 --dist loadfile
# --no-loadscope-reorder`): whole modules go to workers in collection order, two each to
# start with, then one to whichever is free. The long end-to-end modules go first, so none
# starts last and holds the run up alone; the two heaviest on CPU (8 JAX processes, 4 real
# sglang-jax ranks) start on different workers, beside a light one (chaos: echo lines).
SLOW_FIRST = tuple(f"tests/e2e/test_{m}.py" for m in (
    "multislice", "sglang_real", "chaos", "serving", "docs", "loop", "fast_path",
    "first_day", "ways_in", "top_cost", "control_plane", "mux", "bootstrap"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOW_FIRST)))


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A HOME short enough for the connection daemon's socket (muxproto.MAX_SOCKET_PATH):
    a test's tmp_path is not, under xdist (`.../pytest-10/popen-gw0/<long test name>0`)."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="tpuctl-h", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Emulator:
    endpoint: str
    state_dir: Path
    proc: subprocess.Popen[str]

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def admin(self, method: str, path: str, body: bytes | None = b"") -> Any:
        """One authenticated admin call (`path` after /emulator/v1/); its JSON answer."""
        return admin_call(self.endpoint, self.token, method, path, body)

    def set_faults(self, **values: Any) -> None:
        """Set (or, with None, clear) these faults only (`full_disk=...` is `full-disk`):
        other modules' faults stay."""
        import json

        self.admin("POST", "faults",
                   json.dumps({k.replace("_", "-"): v for k, v in values.items()}).encode())


def admin_call(endpoint: str, token: str | None, method: str, path: str,
               body: bytes | None = b"") -> Any:
    import json
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{endpoint}/emulator/v1/{path}", data=body, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:  # loopback
        return json.loads(resp.read() or b"{}")


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TPUCTL_", "CLOUDSDK_", "GOOGLE_"))}
    env.update(HOME=str(home), NO_GCE_CHECK="True", CLOUDSDK_CONFIG=str(home / "gcloud"),
               PYTHONUNBUFFERED="1", COLUMNS="200",
               # no connection daemon outliving a test, unless a test turns it on
               TPUCTL_PERSIST_CONNECTIONS="0")
    return env


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    return home


def start_emulator(state: Path, home: Path, *faults: str, seed: int | None = None,
                   env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A real `tpuctl emulator serve` process (its own session) and its endpoint. Output goes
    to a file beside the state dir, never to an undrained pipe. `env` adds to its environment
    (e.g. UV_FIND_LINKS, which it passes on to its workers)."""
    args = [sys.executable, "-m", "tpuctl", "emulator", "serve", "--state-dir", str(state),
            "--port", "0", "--create-delay", "0.3"]
    if seed is not None:
        args += ["--seed", str(seed)]
    for f in faults:
        args += ["--fault", f]
    log_path = state.parent / f"{state.name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True,
                                env={**_clean_env(home), **(env or {})},
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text().splitlines():
            if line.startswith("export TPUCTL_API_ENDPOINT="):
                return proc, line.strip().split("=", 1)[1]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("emulator did not start:\n" + log_path.read_text())


def stop_emulator(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


ROOT = Path(__file__).resolve().parents[1]
SGLANG_REQUIREMENTS = ROOT / "recipes" / "requirements-sglang-cpu.txt"


def sglang_wheel_name() -> str:
    """The sglang-jax wheel the CPU serving recipe pins (`sglang-jax[cpu]==VERSION`)."""
    m = re.search(r"^sglang-jax\[cpu\]==(\S+)$", SGLANG_REQUIREMENTS.read_text(), re.MULTILINE)
    assert m, f"{SGLANG_REQUIREMENTS} pins no sglang-jax version"
    return f"sglang_jax-{m.group(1)}-py3-none-any.whl"


def sglang_wheels_dir() -> Path | None:
    """Where that wheel is: TPUCTL_TEST_SGLANG_WHEELS, else `shared/wheels` beside the clone or
    beside any folder above it, else the workspace's /work/shared/wheels (where a clone in a
    temporary folder on this machine finds it). PyPI has only 0.0.2, so the real-server tests
    need this directory."""
    name = sglang_wheel_name()
    places = [os.environ.get("TPUCTL_TEST_SGLANG_WHEELS")]
    places += [str(p / "shared" / "wheels") for p in ROOT.parents]
    places.append("/work/shared/wheels")
    for d in places:
        if d and (Path(d) / name).is_file():
            return Path(d).resolve()
    return None


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Iterator[Emulator]:
    state = tmp_path_factory.mktemp("emulator")
    wheels = sglang_wheels_dir()  # workers find the real sglang-jax wheel there (find-links)
    proc, endpoint = start_emulator(state, session_home,
                                    env={"UV_FIND_LINKS": str(wheels)} if wheels else None)
    yield Emulator(endpoint, state, proc)
    stop_emulator(proc)


@dataclass
class Cli:
    home: Path
    endpoint: str | None
    token_file: Path | None = None  # the emulator's (what `tpuctl emulator start` prints)

    def env(self, **extra: str) -> dict[str, str]:
        env = _clean_env(self.home)
        if self.endpoint:
            env["TPUCTL_API_ENDPOINT"] = self.endpoint
        if self.token_file:
            env["TPUCTL_API_TOKEN_FILE"] = str(self.token_file)
        env.update(extra)
        return env

    def __call__(self, *args: str, timeout: float = 120, input: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tpuctl", *args],
            capture_output=True, text=True, timeout=timeout, env=env or self.env(),
            input=input, stdin=None if input is not None else subprocess.DEVNULL,
            cwd=self.home,
        )


class UpInBackground:
    """`tpuctl up RECIPE --on-preempt recreate --max-recreates 2` as a child process whose
    stdout a thread collects; `seen` is set once a line contains `marker` (time to preempt),
    or when stdout ends without it (`up` is over: nothing left to wait for)."""

    def __init__(self, cli: Cli, recipe: str, cwd: Path, marker: str) -> None:
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tpuctl", "up", recipe, "--on-preempt", "recreate",
             "--max-recreates", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env(), cwd=cwd,
            stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.marked = False

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if marker in line:
                    self.marked = True
                    self.seen.set()
            self.seen.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def finish(self, timeout: float = 600) -> tuple[str, str]:
        """Wait for the exit; (stdout, stderr)."""
        err = self.proc.stderr.read() if self.proc.stderr else ""
        self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return "".join(self.lines), err


@pytest.fixture(scope="session")
def cli(emulator: Emulator, session_home: Path) -> Cli:
    return Cli(home=session_home, endpoint=emulator.endpoint, token_file=emulator.token_file)


@pytest.fixture
def node_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def tpu_client(endpoint: str, token: str | Path | None):
    """The real google-cloud-tpu client pointed at the emulator, with its bearer token (or
    its state dir, where the token is); None: no credentials at all."""
    from google.cloud import tpu_v2

    from tpuctl.cloud.gcp import BearerToken

    if isinstance(token, Path):
        token = (token / "token").read_text().strip()
    return tpu_v2.TpuClient(transport="rest", client_options={"api_endpoint": endpoint},
                            credentials=BearerToken(token))


def wait_until(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 10.0
               ) -> Any:
    """Poll fn() every 20 ms until pred(value); the last value is in the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {value}")
        time.sleep(0.02)


def create_keyed_node(client: Any, parent: str, node_id: str, public_key: str,
                      polling: Any) -> list[tuple[str, int, str]]:
    """A v6e-16 with external IPs (as gcloud asks) whose `ssh-keys` authorize alice's
    `public_key`; its workers' SSH endpoints. (The key works after the guest-agent delay:
    emulators of tests that connect at once set `guest-agent-delay=0`.)"""
    from google.cloud import tpu_v2

    client.create_node(
        parent=parent, node_id=node_id,
        node=tpu_v2.Node(accelerator_type="v6e-16", runtime_version="v2-alpha-tpuv6e",
                         metadata={"ssh-keys": f"alice:{public_key} alice"},
                         network_config=tpu_v2.NetworkConfig(enable_external_ips=True)),
    ).result(timeout=30, polling=polling)
    return ssh_endpoints(client, f"{parent}/nodes/{node_id}")


def ssh_endpoints(client: Any, node: str) -> list[tuple[str, int, str]]:
    """(address, ssh port, host key line) per worker, read from the API as tpuctl's adapter
    does: the external IP when the worker has one (what this machine can reach), else the
    internal one."""
    got = client.get_node(name=node)
    attrs = client.get_guest_attributes(request={"name": node}).guest_attributes
    out = []
    for ep, ga in zip(got.network_endpoints, attrs, strict=True):
        items = {(i.namespace, i.key): i.value for i in ga.query_value.items}
        out.append((ep.access_config.external_ip or ep.ip_address,
                    int(items[("tpuctl-emulator", "ssh-port")]),
                    "ssh-ed25519 " + items[("hostkeys", "ssh-ed25519")]))
    return out
