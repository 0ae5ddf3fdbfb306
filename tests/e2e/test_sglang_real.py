"""The REAL current sglang-jax (the shared wheel, not the stand-in), multi-host on the emulator.

The session emulator's workers see the wheel's directory through UV_FIND_LINKS (conftest);
one local venv of the same requirements, built once, checks the planner's argv against the
real server's own parser (it also fills the emulator's shared uv cache, so the workers'
installs are local copies); one node, `serve-sglang-cpu` (a v4-16: 2 hosts x 4 CPU devices),
whose venv the second `up` finds cached.

The wheel comes from TPUCTL_TEST_SGLANG_WHEELS or `../shared/wheels` beside the clone (where
CI has it); without it these tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    SGLANG_REQUIREMENTS,
    Cli,
    Emulator,
    sglang_wheel_name,
    sglang_wheels_dir,
    wait_until,
)
from tests.e2e.test_loop import git, listening_sockets
from tpuctl.emulator.processes import node_marker

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE = "serve-sglang-cpu"
NODE_ID = f"local-project.local-a.{NODE}"
MODEL = "recipes/models/tiny-qwen2-cpu"
_BUILT: dict[str, str] = {}  # the venv hash once an `up` has built it on the node


@pytest.fixture(scope="module")
def wheels() -> Path:
    d = sglang_wheels_dir()
    if d is None:
        msg = (f"no {sglang_wheel_name()}: set TPUCTL_TEST_SGLANG_WHEELS to the directory "
               "holding it (found by itself in shared/wheels beside the clone or above it)")
        pytest.skip(msg)
    return d


@pytest.fixture(scope="module")
def sgl(emulator: Emulator, cli: Cli, wheels: Path) -> Iterator[tuple[Emulator, Cli]]:
    """The session emulator (started with UV_FIND_LINKS=wheels); the node is gone after."""
    try:
        yield emulator, cli
    finally:
        _tpuctl(cli, ROOT, "down", NODE, "--yes")


@pytest.fixture(scope="module")
def sglang_python(sgl: tuple[Emulator, Cli], wheels: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local venv of the recipe's requirements, on the Python the workers get."""
    from tpuctl.emulator.pythons import local_interpreters

    interp = local_interpreters().get("3.12")
    assert interp is not None, "no Python 3.12 on this machine (sglang-jax needs >= 3.12)"
    venv = tmp_path_factory.mktemp("sglang") / "venv"
    env = {**os.environ, "UV_CACHE_DIR": str(sgl[0].state_dir / "uv-cache"),
           "UV_FIND_LINKS": str(wheels), "UV_PYTHON_DOWNLOADS": "never"}
    uv = [sys.executable, "-m", "uv"]
    for args in (["venv", "-q", "--python", str(interp), str(venv)],
                 ["pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                  "-r", str(SGLANG_REQUIREMENTS)]):
        r = subprocess.run([*uv, *args], env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
    return venv / "bin" / "python"


WITHHOLD = """#!/usr/bin/env bash
# withhold.sh RANK CMD...: worker RANK never starts the server (as when a worker's launch
# hangs); every other worker runs CMD
set -euo pipefail
rank=$1
shift
if [ "$TPUCTL_WORKER_ID" = "$rank" ]; then
  echo "rank $rank withheld"
  exec sleep 3600
fi
exec "$@"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the recipes and variants: a withheld rank, two impossible plans."""
    proj = tmp_path_factory.mktemp("sgl-proj") / "svc"
    shutil.copytree(ROOT / "recipes", proj / "recipes",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "withhold.sh").write_text(WITHHOLD)
    base = yaml.safe_load((proj / "recipes" / "serve-sglang-cpu.yaml").read_text())

    def variant(file: str, **changes: object) -> None:
        doc = json.loads(json.dumps(base))
        for key, value in changes.items():
            section, _, field = key.partition("__")
            if field:
                doc[section][field] = value
            else:
                doc[key] = value
        (proj / "recipes" / f"{file}.yaml").write_text(yaml.safe_dump(doc))

    # same node and requirements as the real recipe (so its venv is reused), rank 1 withheld
    variant("withheld", serve__server=["bash", "withhold.sh", "1", "python", "-m",
                                       "sgl_jax.launch_server"], timeouts__ready=40)
    variant("heads", name="sgl-heads", serve__dp=1)  # tp/dp 8 vs 2 attention heads
    variant("few-requests", name="sgl-few", serve__extra_args=[
        "--max-running-requests", "2", "--max-total-tokens", "4096"])
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "serving")
    return proj


def _tpuctl(cli: Cli, proj: Path, *args: str, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tpuctl", *args], capture_output=True,
                          text=True, cwd=proj, env=cli.env(), timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _processes(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds `marker` (KEY=VALUE). sglang-jax's
    schedulers retitle themselves (setproctitle), which overwrites what /proc shows of their
    environment: `_run_processes` also finds them by process group."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in env and state != "Z":  # an exact KEY=VALUE entry
            found.append(int(d.name))
    return found


def _group_members(pgids: set[int]) -> dict[int, str]:
    """{pid: command name} of the live (non-zombie) processes in these process groups."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found[int(d.name)] = comm
    return found


def _run_pgids(emu: Emulator, run: str) -> set[int]:
    return {int((_worker_home(emu, i) / ".tpuctl" / "runs" / run / "pgid").read_text())
            for i in (0, 1)}


def _run_processes(emu: Emulator, run: str, pgids: set[int] | None = None) -> dict[int, str]:
    """Every live process of the run on both workers: by its process groups and its env."""
    found = _group_members(pgids if pgids is not None else _run_pgids(emu, run))
    for pid in _processes(f"TPUCTL_RUN_ID={run}"):
        found.setdefault(pid, "?")
    return found


def _worker_home(emu: Emulator, i: int) -> Path:
    return emu.state_dir / "nodes" / NODE_ID / f"w{i}" / "home"


def _latest_run(emu: Emulator) -> str:
    return (_worker_home(emu, 0) / ".tpuctl" / "runs" / "latest").read_text().strip()


# ------------------------------------------------------------------------------ the plans

TYPES = ("v4-8", "v4-16", "v4-32", "v5p-16", "v5litepod-8", "v5litepod-16", "v6e-8",
         "v6e-16", "v6e-32", "v2-32")


def _argv(model: str, tp: int, dp: int, nnodes: int, rank: int) -> list[str]:
    """The flags the planner would write for a split it refuses (to ask the server too)."""
    argv = ["--model-path", model, "--tp-size", str(tp), "--dp-size", str(dp)]
    if nnodes > 1:
        argv += ["--nnodes", str(nnodes), "--node-rank", str(rank),
                 "--dist-init-addr", "127.1.0.1:20000"]
    return [*argv, "--host", "127.1.0.1", "--port", "30000", "--device", "cpu",
            "--attention-backend", "native", "--load-format", "dummy"]


def test_the_real_server_accepts_every_plan_and_refuses_every_refusal(sglang_python, tmp_path):
    """For the CPU test model (and a 12-head variant), on several slices, every tp/dp split:
    the planner's argv passes the server's own parser and startup checks exactly when the
    planner makes a plan; a refused split fails there too."""
    from tpuctl.accelerators import parse_accelerator
    from tpuctl.recipes.models import load_model_config
    from tpuctl.recipes.planner import PlanRefused, devices_per_chip, plan_serve

    twelve = tmp_path / "tiny-12-heads"
    shutil.copytree(ROOT / MODEL, twelve)
    cfg = json.loads((twelve / "config.json").read_text())
    cfg.update(num_attention_heads=12, num_key_value_heads=4)
    (twelve / "config.json").write_text(json.dumps(cfg))
    cases: list[tuple[str, bool, list[str]]] = []
    for model in (MODEL, str(twelve)):
        mcfg = load_model_config(str(ROOT / model) if model == MODEL else model)
        for t in TYPES:
            accel = parse_accelerator(t)
            devices = accel.chips * devices_per_chip(accel)
            for dp in (d for d in range(1, devices + 1) if devices % d == 0):
                label = f"{model} {t} dp={dp}"
                try:
                    plan = plan_serve(mcfg, accel, dp=dp)
                except PlanRefused:
                    for rank in {0, accel.hosts - 1}:
                        cases.append((label, False, _argv(model, devices, dp, accel.hosts,
                                                          rank)))
                    continue
                for rank in {0, plan.nnodes - 1}:
                    argv = plan.argv_for(rank, "127.1.0.1", cpu=True, load_format="dummy")
                    assert argv[:3] == ["python", "-m", "sgl_jax.launch_server"]
                    argv[argv.index("--model-path") + 1] = model
                    cases.append((label, True, argv[3:]))
    assert sum(ok for _, ok, _ in cases) >= 20 and sum(not ok for _, ok, _ in cases) >= 20
    r = subprocess.run([str(sglang_python), str(ROOT / "tests" / "sglang" / "check_argv.py")],
                       input=json.dumps([argv for _, _, argv in cases]), capture_output=True,
                       text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout)
    wrong = [(label, ok, res) for (label, ok, _), res in zip(cases, results, strict=True)
             if res["ok"] != ok]
    assert not wrong, wrong
    for (label, ok, argv), res in zip(cases, results, strict=True):
        if ok:  # the server reads the plan's layout as planned
            assert (res["tp"], res["dp"]) == (int(argv[argv.index("--tp-size") + 1]),
                                              int(argv[argv.index("--dp-size") + 1])), label
        else:
            assert "attention heads" in res["error"] or "divisible" in res["error"], res


def test_impossible_plans_are_refused_before_anything_is_created(sgl, project):
    _, cli = sgl
    r = _tpuctl(cli, project, "up", "recipes/heads.yaml")
    assert r.returncode == 2, r.stderr
    assert "attention heads (2) must be divisible" in r.stderr, r.stderr
    assert "valid --dp values on v4-16: 4, 8" in r.stderr, r.stderr
    r = _tpuctl(cli, project, "up", "recipes/few-requests.yaml")
    assert r.returncode == 2, r.stderr
    assert "--max-running-requests 2 is less than the plan's dp (4)" in r.stderr, r.stderr
    for node in ("sgl-heads", "sgl-few"):
        assert _tpuctl(cli, project, "describe", node).returncode == 3


# ------------------------------------------------------------------------- on the slice

def test_a_rank_that_never_starts_is_named_at_the_startup_deadline(sgl, project):
    emu, cli = sgl
    t0 = time.monotonic()
    r = _tpuctl(cli, project, "up", "recipes/withheld.yaml", timeout=900)
    assert r.returncode == 5, r.stderr
    assert "not ready after 40s; not up: w1" in r.stderr, r.stderr
    assert "rank 1 withheld" in r.stderr, r.stderr
    # the real rank 0 waits for its peer without a timeout of its own: its last lines show it
    assert "Begins to synchronize" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 600
    # the run was stopped on every worker: rank 0 is not left waiting forever
    run = _latest_run(emu)
    assert _run_processes(emu, run) == {}
    venvs = _worker_home(emu, 0) / ".tpuctl" / "venvs"
    _BUILT["venv"] = (venvs / "current").read_text().strip()


def test_up_serves_generates_forwards_then_degrades_when_a_rank_dies(sgl, project):
    emu, cli = sgl
    r = _tpuctl(cli, project, "up", "recipes/serve-sglang-cpu.yaml", "--json", timeout=900)
    assert r.returncode == 0, r.stderr
    steps = {s["step"]: s for s in json.loads(r.stdout)["steps"]}
    assert steps["ready"]["outcome"] == "done" and steps["ready"]["seconds"] < 600
    if _BUILT:  # the venv the previous test built: the marker makes bootstrap skip it
        assert steps["bootstrap"]["outcome"] == "cached", steps
        assert _BUILT["venv"] in steps["bootstrap"]["detail"]

    # every rank got the planner's argv, on its own worker's address
    ips = [w["ip"] for w in json.loads(_tpuctl(cli, project, "describe", NODE, "--json")
                                       .stdout)["workers"]]
    assert len(ips) == 2
    r = _tpuctl(cli, project, "exec", NODE, "--", "bash", "-c",
                "cat ~/.tpuctl/runs/$(cat ~/.tpuctl/runs/latest)/cmd")
    cmds = dict(re.findall(r"^\[w(\d)\] (.*)$", r.stdout, re.MULTILINE))
    for i, ip in enumerate(ips):
        argv = cmds[str(i)].split()
        flag = {argv[k]: argv[k + 1] for k in range(len(argv) - 1) if argv[k].startswith("--")}
        assert argv[:3] == ["python", "-m", "sgl_jax.launch_server"]
        assert (flag["--tp-size"], flag["--dp-size"], flag["--nnodes"]) == ("8", "4", "2")
        assert (flag["--node-rank"], flag["--host"]) == (str(i), ip)
        assert flag["--dist-init-addr"].startswith(f"{ips[0]}:")
        assert (flag["--device"], flag["--load-format"]) == ("cpu", "dummy")

    # the ranks meet at worker 0: the JAX coordinator (bound there through the run's
    # JAX_COORDINATOR_BIND_ADDRESS, not on every interface) and sglang-jax's ZMQ ports P+5, P+6
    dist = cmds["0"].split("--dist-init-addr ")[1].split()[0]
    port = int(dist.rsplit(":", 1)[1])
    env0 = (_worker_home(emu, 0) / ".tpuctl" / "runs" / _latest_run(emu) / "env").read_text()
    assert re.search(rf"^export JAX_COORDINATOR_BIND_ADDRESS='?{re.escape(dist)}'?$", env0,
                     re.MULTILINE), env0
    listening = listening_sockets()
    for p in (port, port + 5, port + 6):
        assert {a for a, q in listening if q == p} == {ips[0]}, (p, sorted(listening))

    r = _tpuctl(cli, project, "generate", NODE, "Hello TPU", "--max-tokens", "4", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["status"] == 200 and answer["text"]
    assert answer["meta_info"]["completion_tokens"] == 4
    st = json.loads(_tpuctl(cli, project, "status", NODE, "--json").stdout)
    assert (st["serve"], st["health"], st["degraded_workers"]) == ("serving", "200", [])

    _openai_completion_through_forward(cli, project)

    # kill rank 1: the real rank 0 keeps answering /health 200, tpuctl says degraded
    run = _latest_run(emu)
    pgids = _run_pgids(emu, run)
    names = sorted(_run_processes(emu, run, pgids).values())
    assert names.count("sglang::schedul") == 2, names  # one scheduler per rank, seen
    pgid = int((_worker_home(emu, 1) / ".tpuctl" / "runs" / run / "pgid").read_text())
    os.killpg(pgid, signal.SIGKILL)
    st = wait_until(lambda: json.loads(_tpuctl(cli, project, "status", NODE, "--json").stdout),
                    lambda s: s["serve"] != "serving", timeout=60)
    # rank 0 lives on (/health 200) unless the death caught its scheduler mid-step: then it
    # takes itself down moments later, and status says `down` but still names the cause
    assert st["first_down"] == 1, st
    assert (st["serve"], st["degraded_workers"]) in (("degraded", [1]), ("down", [0, 1])), st

    r = _tpuctl(cli, project, "stop", NODE)
    assert r.returncode == 0, r.stderr
    assert _run_processes(emu, run, pgids) == {}
    r = _tpuctl(cli, project, "down", NODE, "--yes")
    assert r.returncode == 0, r.stderr
    assert _run_processes(emu, run, pgids) == {}
    assert _processes(f"TPUCTL_EMULATOR_NODE={node_marker(NODE_ID, emu.state_dir)}") == []


def _openai_completion_through_forward(cli: Cli, project: Path) -> None:
    """A stock OpenAI client, pointed at `tpuctl forward`'s local URL, gets a completion."""
    import openai

    # Ctrl-C must reach it even when this suite runs as a background job (whose children
    # inherit SIGINT ignored, and Python then keeps ignoring it)
    fwd = subprocess.Popen([sys.executable, "-m", "tpuctl", "forward", NODE, "--local-port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=project, env=cli.env(), stdin=subprocess.DEVNULL,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert fwd.stdout is not None
        url = fwd.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url), (url, fwd.poll())
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", timeout=120)
        assert [m.id for m in client.models.list()] == [MODEL]
        done = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4)
        assert done.usage is not None and done.usage.completion_tokens == 4
        assert done.choices[0].finish_reason == "length"
    finally:
        fwd.send_signal(signal.SIGINT)
        try:
            _, err = fwd.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            fwd.kill()  # never left behind
            _, err = fwd.communicate()
            pytest.fail(f"forward ignored Ctrl-C: {err}")
    assert fwd.returncode == 0, err
