"""Serving on the emulator with the sglang-jax stand-in: ready, generate, degraded, deadline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, wait_until
from tests.e2e.test_loop import git

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the serving recipe, the tiny model config and the stand-in."""
    proj = tmp_path_factory.mktemp("serve") / "svc"
    (proj / "tests").mkdir(parents=True)
    shutil.copytree(ROOT / "tests" / "standins", proj / "tests" / "standins",
                    ignore=shutil.ignore_patterns("__pycache__", "test_*"))
    shutil.copytree(ROOT / "recipes", proj / "recipes",
                    ignore=shutil.ignore_patterns("__pycache__"))
    base = (proj / "recipes" / "serve-standin.yaml").read_text()
    (proj / "recipes" / "withheld.yaml").write_text(
        base.replace("name: serve-standin", "name: serve-withheld")
        .replace("  ready: 120", "  ready: 15")
        + "env:\n  SGL_STANDIN_WITHHOLD_RANKS: '2'\n")
    (proj / "recipes" / "too-big.yaml").write_text(
        "name: too-big\naccelerator: v5litepod-8\n"
        "serve:\n  model: meta-llama/Meta-Llama-3-70B\n")
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "serving")
    return proj


def tpuctl(cli: Cli, proj: Path, *args: str, timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tpuctl", *args], capture_output=True,
                          text=True, cwd=proj, env=cli.env(), timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _pgid(emulator, node: str, worker: int) -> int:
    home = emulator.state_dir / "nodes" / f"local-project.local-a.{node}" / f"w{worker}" / "home"
    run = (home / ".tpuctl/runs/latest").read_text().strip()
    return int((home / ".tpuctl/runs" / run / "pgid").read_text())


def test_serve_ready_generate_then_degraded_when_a_rank_dies(cli, project, emulator):
    node = "serve-standin"
    try:
        r = tpuctl(cli, project, "up", "recipes/serve-standin.yaml", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert [s["step"] for s in doc["steps"]][-1] == "ready"
        assert doc["url"].endswith(":30000")
        r = tpuctl(cli, project, "generate", node, "Hello TPU", "--json")
        assert r.returncode == 0, r.stderr
        answer = json.loads(r.stdout)
        assert answer["status"] == 200 and "Hello TPU" in answer["text"]
        st = json.loads(tpuctl(cli, project, "status", node, "--json").stdout)
        assert st["serve"] == "serving" and st["health"] == "200"
        # every rank got the planned argv: same tp/dp, its own node rank
        r = tpuctl(cli, project, "exec", node, "--", "bash", "-c",
                   "cat ~/.tpuctl/runs/$(cat ~/.tpuctl/runs/latest)/cmd")
        ranks = sorted(int(m) for m in re.findall(r"--node-rank (\d)", r.stdout))
        assert ranks == [0, 1, 2, 3]
        assert len(set(re.findall(r"--tp-size \d+ --dp-size \d+", r.stdout))) == 1
        # kill rank 2: /health stays 200 on the real server, but tpuctl says degraded
        import os
        import signal

        os.killpg(_pgid(emulator, node, 2), signal.SIGKILL)
        st = wait_until(lambda: json.loads(tpuctl(cli, project, "status", node, "--json").stdout),
                        lambda st: st["serve"] != "serving", timeout=30)
        assert st["serve"] == "degraded" and st["degraded_workers"] == [2]
        r = tpuctl(cli, project, "status", node, "--watch")
        assert r.returncode == 1 and "w2" in r.stderr
    finally:
        tpuctl(cli, project, "down", node, "--yes")


def test_a_rank_that_never_starts_fails_at_the_deadline_naming_it(cli, project, emulator):
    node = "serve-withheld"
    try:
        t0 = time.monotonic()
        r = tpuctl(cli, project, "up", "recipes/withheld.yaml")
        assert r.returncode == 5, r.stderr
        assert time.monotonic() - t0 < 240
        assert "not up: w2" in r.stderr
        assert "Begins to synchronize" in r.stderr  # rank 0's last lines are shown
        # the run was stopped everywhere: nothing half-running
        st = json.loads(tpuctl(cli, project, "status", node, "--json").stdout)
        assert all(w["state"] != "running" for w in st["workers"])
    finally:
        tpuctl(cli, project, "down", node, "--yes")


def test_an_impossible_plan_is_refused_before_anything_is_created(cli, project):
    r = tpuctl(cli, project, "up", "recipes/too-big.yaml")
    assert r.returncode == 2, r.stderr
    assert "v5litepod-8" in r.stderr
    assert tpuctl(cli, project, "describe", "too-big").returncode == 3


def test_serve_short_form(cli, project):
    node = "serve-short"
    try:
        r = tpuctl(cli, project, "serve", node, "--model", "recipes/models/tiny-standin",
                   "--type", "v6e-16", "--cpu", "--load-format", "dummy", "--server",
                   "python3 tests/standins/sgl_server.py", "--python", "3.11",
                   "--ready-timeout", "120", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["url"].endswith(":30000")
        r = tpuctl(cli, project, "generate", node, "short form")
        assert r.returncode == 0 and "short form" in r.stdout, r.stderr
    finally:
        tpuctl(cli, project, "down", node, "--yes")
