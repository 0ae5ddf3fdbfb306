"""`tpuctl bootstrap` end to end: real CLI, real SSH, real uv, a package index served here.

The index is a PEP 503 "simple" index served by http.server, holding one wheel built in the
test (`tinypkg-1.0-py3-none-any.whl`, `tinypkg.VALUE == 42`). A transient failure is made
deterministic by binding an index's port without listening on it (connection refused) until
the worker's first attempt has failed, watched through the worker's files (the emulated
workers' homes are on this machine). Each worker gets its own index address, so uv's own
jittered retries on one worker cannot outlast another worker's tpuctl-level retries.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.e2e

NODE = f"bs-{uuid.uuid4().hex[:6]}"
WORKERS = range(4)  # v6e-16: 4 hosts


# --- a tiny PEP 503 index --------------------------------------------------------------------

def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_index(root: Path) -> Path:
    """root/simple/{index.html, tinypkg/{index.html, tinypkg-1.0-py3-none-any.whl}}."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\nSummary: test wheel\n",
        "tinypkg-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: tpuctl-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
    }
    record = [_record_line(n, d) for n, d in files.items()]
    record.append("tinypkg-1.0.dist-info/RECORD,,")
    files["tinypkg-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    pkg = root / "simple" / "tinypkg"
    pkg.mkdir(parents=True)
    wheel = pkg / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (pkg / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{wheel.name}#sha256={sha}">{wheel.name}</a>'
        "</body></html>\n")
    (root / "simple" / "index.html").write_text(
        '<!DOCTYPE html><html><body><a href="tinypkg/">tinypkg</a></body></html>\n')
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Index:
    """Bound at once (its port is known and refuses connections), serving after start()."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = http.server.ThreadingHTTPServer(
            (host, port), partial(_QuietHandler, directory=str(root)), bind_and_activate=False)
        self.server.daemon_threads = True
        try:
            self.server.server_bind()  # bound, not listening: connect() gets ECONNREFUSED
        except OSError:
            self.server.server_close()
            raise
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/simple"
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.server.server_activate()
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()


def per_worker_indexes(root: Path) -> list[Index]:
    """One index per worker on 127.77.0.1<i>, all on one port, none serving yet.

    A requirements file names them as `http://127.77.0.1${TPU_WORKER_ID}:PORT/simple` (uv
    expands environment variables in requirements files, as pip does), so each worker's
    index comes up on its own schedule."""
    for _ in range(20):
        indexes: list[Index] = []
        try:
            for i in WORKERS:
                indexes.append(Index(root, f"127.77.0.1{i}", indexes[0].port if indexes else 0))
            return indexes
        except OSError:  # that port is taken on another of the addresses: pick another
            for idx in indexes:
                idx.close()
    raise RuntimeError("no free port on 127.77.0.10-13")


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("index"))


@pytest.fixture
def late_indexes(index_root: Path) -> Iterator[list[Index]]:
    """Per-worker indexes that are not serving yet: the test decides when each starts."""
    indexes = per_worker_indexes(index_root)
    yield indexes
    for idx in indexes:
        idx.close()


@pytest.fixture(scope="module")
def index(index_root: Path) -> Iterator[Index]:
    idx = Index(index_root)
    idx.start()
    yield idx
    idx.close()


# --- the slice -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node(cli: Cli) -> Iterator[str]:
    r = cli("create", NODE, "--type", "v6e-16", timeout=180)
    assert r.returncode == 0, r.stderr
    yield NODE
    cli("delete", NODE, "--yes", timeout=180)


def home(emulator, i: int) -> Path:
    return emulator.state_dir / "nodes" / f"local-project.local-a.{NODE}" / f"w{i}" / "home"


def venvs(emulator, i: int) -> Path:
    return home(emulator, i) / ".tpuctl" / "venvs"


def write_req(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def bootstrap_json(cli: Cli, node: str, req: Path) -> dict:
    r = cli("bootstrap", node, "--requirements", str(req), "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def hash_of(emulator, i: int, req: bytes) -> str | None:
    """The bootstrap hash on worker i whose saved requirements are exactly `req`."""
    for p in venvs(emulator, i).glob("*.req"):
        try:
            if p.read_bytes() == req:
                return p.name[:-len(".req")]
        except FileNotFoundError:
            pass
    return None


# --- tests -----------------------------------------------------------------------------------

def test_transient_failure_is_retried_then_succeeds(cli, node, emulator, late_indexes,
                                                    tmp_path):
    port = late_indexes[0].port
    req = write_req(tmp_path, "requirements.txt",
                    f"--index-url http://127.77.0.1${{TPU_WORKER_ID}}:{port}/simple\n"
                    "tinypkg==1.0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tpuctl", "bootstrap", node, "--requirements", str(req),
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=cli.env(), cwd=cli.home)
    try:
        # A worker's first attempt fails (connection refused, after uv's own retries) and
        # `<hash>.exit` appears; only then does that worker's index start listening. tenacity
        # waits at least 1 s before the next attempt, which finds a live index. Each worker
        # has its own index, so uv's jittered retries on the others cannot race this one.
        failed: dict[int, str] = {}
        deadline = time.monotonic() + 180
        while sorted(failed) != list(WORKERS):
            assert proc.poll() is None, f"bootstrap ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, f"first attempts did not fail: {failed}"
            for i in WORKERS:
                h = hash_of(emulator, i, req.read_bytes())
                if i not in failed and h and (venvs(emulator, i) / f"{h}.exit").exists():
                    failed[i] = (home(emulator, i) / ".tpuctl/logs/bootstrap.log").read_text()
                    late_indexes[i].start()
            time.sleep(0.05)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["cached"] is False
    assert [w["worker"] for w in doc["workers"]] == list(WORKERS)
    for w in doc["workers"]:
        assert w["state"] == "done" and w["cached"] is False and w["attempts"] == 2, doc
    for i, log in failed.items():  # the first attempts failed for the intended reason
        assert "Connection refused" in log and f"127.77.0.1{i}:{port}" in log, (i, log)
    # the venv really has the package, on every worker
    code = "import tinypkg; print(tinypkg.VALUE)"
    r = cli("exec", node, "--", "bash", "-c",
            f"~/.tpuctl/venvs/{doc['hash']}/bin/python -c '{code}'", timeout=120)
    assert r.returncode == 0, r.stderr
    lines = dict(re.findall(r"^\[w(\d+)\] (.*)$", r.stdout, re.MULTILINE))
    assert lines == {str(i): "42" for i in WORKERS}, r.stdout


def test_unsatisfiable_requirement_fails_fast_with_log_tail(cli, node, index, tmp_path):
    req = write_req(tmp_path, "requirements.txt", f"--index-url {index.url}\ntinypkg==9.9\n")
    t = time.monotonic()
    r = cli("bootstrap", node, "--requirements", str(req), timeout=300)
    elapsed = time.monotonic() - t
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"bootstrap failed on w[0-3]\b", r.stderr), r.stderr
    assert "No solution found" in r.stderr and "tinypkg" in r.stderr, r.stderr
    assert "(attempt 2)" not in r.stderr and "after 2 attempts" not in r.stderr, r.stderr
    assert elapsed < 60, f"a permanent failure took {elapsed:.1f}s"


def test_a_python_the_worker_lacks_fails_at_once_naming_it(cli, node, index, tmp_path):
    """Not retried, not blamed on the package index: uv cannot install it (the emulator, like
    an image without network, has no Python downloads)."""
    from tpuctl.emulator.pythons import local_interpreters

    have = local_interpreters()
    missing = next(f"3.{m}" for m in range(14, 60) if f"3.{m}" not in have)
    req = write_req(tmp_path, "requirements.txt", f"--index-url {index.url}\ntinypkg==1.0\n")
    t = time.monotonic()
    r = cli("bootstrap", node, "--requirements", str(req), "--python", missing, timeout=300)
    elapsed = time.monotonic() - t
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(rf"Python {missing} is not on w[0-3] and `uv python install {missing}` "
                     r"failed: Python downloads are not allowed", r.stderr), r.stderr
    assert "package index" not in r.stderr and "attempts" not in r.stderr, r.stderr
    assert elapsed < 30, f"a missing interpreter took {elapsed:.1f}s to report"


def test_a_python_other_than_the_images_comes_from_this_machine(cli, node, index, tmp_path):
    """What `uv python install` gives a real image, the emulator offers from local files."""
    from tpuctl.emulator.pythons import local_interpreters

    image = subprocess.run(["python3", "-c", "import sys; print(sys.version_info[1])"],
                           capture_output=True, text=True).stdout.strip()
    other = next((v for v in sorted(local_interpreters(), reverse=True)
                  if v != f"3.{image}" and v >= "3.10"), None)
    if other is None:
        pytest.skip("this machine has one Python only")
    req = write_req(tmp_path, "requirements.txt", f"--index-url {index.url}\ntinypkg==1.0\n")
    r = cli("bootstrap", node, "--requirements", str(req), "--python", other, "--json",
            timeout=300)
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)["hash"]
    r = cli("exec", node, "--", "bash", "-c", f"~/.tpuctl/venvs/{h}/bin/python -c "
            "'import sys, tinypkg; print(\"%d.%d\" % sys.version_info[:2], tinypkg.VALUE)'")
    assert r.returncode == 0, r.stderr
    assert set(re.findall(r"^\[w\d\] (.*)$", r.stdout, re.MULTILINE)) == {f"{other} 42"}


@pytest.fixture(scope="module")
def built(cli, node, index, tmp_path_factory) -> tuple[Path, dict]:
    req = tmp_path_factory.mktemp("req") / "requirements.txt"
    req.write_text(f"--index-url {index.url}\ntinypkg==1.0\n")
    return req, bootstrap_json(cli, node, req)


def test_second_run_is_cached_and_new_requirements_build_again(cli, node, emulator, built):
    req, first = built
    assert first["cached"] is False
    assert all(w["state"] == "done" and w["attempts"] == 1 for w in first["workers"]), first
    h = first["hash"]
    markers = [venvs(emulator, i) / h / ".tpuctl-ready" for i in WORKERS]
    before = [m.stat().st_mtime_ns for m in markers]

    again = bootstrap_json(cli, node, req)
    assert again["hash"] == h and again["cached"] is True, again
    assert all(w["cached"] is True and w["attempts"] == 1 for w in again["workers"]), again
    assert [m.stat().st_mtime_ns for m in markers] == before  # nothing was rebuilt
    # the cached run is one round trip per worker; a build polls at least once (1 s)
    assert again["seconds"] < first["seconds"], (again, first)

    # a different requirements file (even a comment) is a different venv
    req.write_text(req.read_text() + "# pinned for the test\n")
    changed = bootstrap_json(cli, node, req)
    assert changed["hash"] != h and changed["cached"] is False, changed
    for i in WORKERS:
        assert (venvs(emulator, i) / changed["hash"] / ".tpuctl-ready").is_file()


def test_marker_and_log_on_every_worker(emulator, built):
    _, doc = built
    for i in WORKERS:
        marker = venvs(emulator, i) / doc["hash"] / ".tpuctl-ready"
        assert marker.is_file(), marker
        assert re.match(r"\d{4}-\d\d-\d\dT", marker.read_text())
        log = home(emulator, i) / ".tpuctl" / "logs" / "bootstrap.log"
        assert log.is_file(), log
        assert "[tpuctl-bootstrap]" in log.read_text()
        assert (venvs(emulator, i) / doc["hash"] / "bin" / "python").exists()
