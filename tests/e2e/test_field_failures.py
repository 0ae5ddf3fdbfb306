"""Field failures (shared/FIELD_NOTES.md, issue 15 item 7) through the real CLI on the emulator:
a node that reports zero workers, one stuck worker during a whole-slice `exec`, refused SSH
connections retried while a command's own exit status (255 included) is never re-run, and a
gated model id refused by `up` before anything is created. One 2-worker node (v4-16)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator
from tests.e2e.test_loop import git

pytestmark = pytest.mark.e2e

NODE = "field-failures"


@pytest.fixture(scope="module")
def node(cli: Cli) -> Iterator[str]:
    r = cli("create", NODE, "--type", "v4-16")
    assert r.returncode == 0, r.stderr
    yield NODE
    cli("delete", NODE, "--yes")


def forget_workers(cli: Cli, node: str) -> None:
    """As on a node seen for the first time: no worker list cached from before. (The entry
    also remembers that `create` just changed the node's keys: wait for them to apply
    first, so that later commands need not know.)"""
    assert cli("exec", node, "--", "true").returncode == 0
    for entry in (cli.home / ".tpuctl" / "cache" / "workers").glob(f"{node}.*.json"):
        entry.unlink()


def home(emulator: Emulator, node: str, i: int) -> Path:
    return emulator.state_dir / "nodes" / f"local-project.local-a.{node}" / f"w{i}" / "home"


def test_a_node_that_reports_zero_workers_is_refused(cli: Cli, node: str,
                                                     emulator: Emulator) -> None:
    forget_workers(cli, node)
    emulator.set_faults(missing_workers=f"{node}:2")
    try:
        r = cli("exec", node, "--", "true", env=cli.env(TPUCTL_WORKER_WAIT="1"))
        doc = json.loads(cli("doctor", node, "--json").stdout)
    finally:
        emulator.set_faults(missing_workers=None)
    assert r.returncode == 4 and "reports no workers" in r.stderr, r.stderr
    assert doc["exit_code"] == 1 and doc["workers"] == []
    assert {p["check"] for p in doc["problems"]} == {"workers"}


def test_one_stuck_worker_is_named_and_killed_the_others_finish(cli: Cli, node: str,
                                                                emulator: Emulator) -> None:
    marker = home(emulator, node, 0) / "stuck-test"
    marker.unlink(missing_ok=True)
    emulator.set_faults(stuck_workers=f"{node}:1")
    try:
        r = cli("exec", node, "--timeout", "2", "--json", "--", "bash", "-c",
                "touch ~/stuck-test; echo ran")
    finally:
        emulator.set_faults(stuck_workers=None)
    doc = json.loads(r.stdout)
    by = {w["worker"]: w for w in doc["workers"]}
    assert r.returncode == 5 and doc["exit_code"] == 5
    assert by[0]["exit_code"] == 0 and not by[0]["timed_out"] and marker.exists()
    assert by[1]["timed_out"] and by[1]["seconds"] < 30
    # the stuck command is gone from its worker (its channel closed, the process killed)
    assert not (home(emulator, node, 1) / "stuck-test").exists()
    r = cli("exec", node, "--", "echo", "after")
    assert r.returncode == 0 and "[w1] after" in r.stdout


def test_refused_connections_are_retried_but_a_255_exit_is_never_re_run(
        cli: Cli, node: str, emulator: Emulator) -> None:
    for i in (0, 1):
        (home(emulator, node, i) / "runs-255").unlink(missing_ok=True)
    # every exec is a new process with new connections (no connection daemon in tests)
    # seed 3: the first connection is refused, the next ones are not (Faults(seed=3))
    emulator.set_faults(ssh_refuse_rate=0.5, seed=3)
    try:
        r = cli("exec", node, "--json", "--", "bash", "-c", "echo once >> ~/runs-255; exit 255")
    finally:
        emulator.set_faults(ssh_refuse_rate=None)
    doc = json.loads(r.stdout)
    assert r.returncode == 255 and [w["exit_code"] for w in doc["workers"]] == [255, 255]
    for i in (0, 1):  # ran exactly once on each worker: a command's own 255 is not retried
        assert (home(emulator, node, i) / "runs-255").read_text() == "once\n"


class _Gated(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the hub's answer for a gated repo without a token
        self.send_response(403)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gated_hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_gated_model_id_is_refused_by_up_before_create(cli: Cli, gated_hub: str,
                                                         tmp_path: Path) -> None:
    recipe = tmp_path / "gated.yaml"
    recipe.write_text("name: gated-serve\naccelerator: v4-16\nserve:\n"
                      "  model: acme/gated-model\n  cpu: true\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "gated")
    r = subprocess.run([sys.executable, "-m", "tpuctl", "up", recipe.name], capture_output=True,
                       text=True, cwd=tmp_path, env=cli.env(HF_ENDPOINT=gated_hub),
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "gated" in r.stderr and "acme/gated-model" in r.stderr and "HTTP 403" in r.stderr
    listed = json.loads(cli("list", "--json").stdout)
    assert "gated-serve" not in json.dumps(listed)  # nothing was created


def test_an_image_without_ensurepip_still_bootstraps_and_doctor_warns(
        cli: Cli, node: str, emulator: Emulator) -> None:
    emulator.set_faults(no_ensurepip=node)
    try:
        r = cli("bootstrap", node, "--json", timeout=300)
        assert r.returncode == 0, r.stderr  # uv makes the venv: no ensurepip needed
        doc = json.loads(cli("doctor", node, "--json").stdout)
    finally:
        emulator.set_faults(no_ensurepip=None)
    assert doc["exit_code"] == 0  # a warning, not a failure
    venv = [next(c for c in w["checks"] if c["check"] == "venv") for w in doc["workers"]]
    assert [c["status"] for c in venv] == ["warn", "warn"]
    assert "ensurepip" in venv[0]["detail"] and "uv" in venv[0]["fix"]
    # the bootstrapped venv's versions are reported, the same on both workers
    packages = [next(c for c in w["checks"] if c["check"] == "packages")
                for w in doc["workers"]]
    assert [c["status"] for c in packages] == ["ok", "ok"]
