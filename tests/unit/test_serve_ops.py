"""Serving recipes turned into per-rank commands: what the real sglang-jax would refuse after
minutes of startup is refused here first, and the ports rank 0 binds never hit its own HTTP
port. (The argv itself is checked against the real server's parser in
tests/e2e/test_sglang_real.py.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import ExitCode, UsageError
from tpuctl.model import Slice, Worker
from tpuctl.ops.serve import DIST_PORT_SPAN, check_extra_args, dist_port, plan_for, rank_commands
from tpuctl.recipes.models import load_model_config
from tpuctl.recipes.planner import plan_serve
from tpuctl.recipes.schema import Recipe

ROOT = Path(__file__).resolve().parents[2]
TINY = load_model_config(str(ROOT / "recipes" / "models" / "tiny-qwen2-cpu"))
PLAN = plan_serve(TINY, "v4-16")  # 8 devices on 2 hosts; 2 heads: dp 8 (default) or 4


def test_the_test_model_on_a_v4_16():
    assert (PLAN.nnodes, PLAN.tp, PLAN.dp, PLAN.tp_per_group) == (2, 8, 8, 1)


@pytest.mark.parametrize("extra", [
    ["--tp-size", "4"], ["--dp-size=2"], ["--host", "0.0.0.0"], ["--port", "1"],
    ["--nnodes", "1"], ["--node-rank", "0"], ["--dist-init-addr", "a:1"],
    ["--model-path", "x"], ["--device", "tpu"], ["--load-format=auto"],
])
def test_flags_the_planner_owns_are_refused(extra):
    with pytest.raises(UsageError) as e:
        check_extra_args(extra, PLAN)
    assert extra[0].split("=")[0] in e.value.message
    assert e.value.exit_code == ExitCode.USAGE


def test_fewer_running_requests_than_dp_groups_is_refused():
    """sglang-jax: "max_running_requests (4) is less than dp_size (8)", after model load."""
    with pytest.raises(UsageError, match=r"--max-running-requests 4 is less than the plan's "
                       r"dp \(8\)") as e:
        check_extra_args(["--max-running-requests", "4"], PLAN)
    assert "at least 8" in (e.value.hint or "")
    with pytest.raises(UsageError, match="not a number"):
        check_extra_args(["--max-running-requests=lots"], PLAN)
    # argparse keeps the last value: so does the check
    check_extra_args(["--max-running-requests", "4", "--max-running-requests=8"], PLAN)
    check_extra_args(["--max-running-requests", "16"], PLAN)
    old = plan_serve(TINY, "v4-16", sglang_version="0.0.2")  # no dp groups in 0.0.2
    check_extra_args(["--max-running-requests", "1"], old)


def test_single_process_mode_on_several_nodes_needs_a_memory_fraction():
    with pytest.raises(UsageError, match="--enable-single-process on several nodes"):
        check_extra_args(["--enable-single-process"], PLAN)
    check_extra_args(["--enable-single-process", "--mem-fraction-static", "0.1"], PLAN)
    check_extra_args(["--enable-single-process"], plan_serve(TINY, "v4-8"))  # one node


@given(base=st.integers(20000, 39999), http=st.integers(1, 65535))
def test_rank0_ports_never_include_the_http_port(base, http):
    p = dist_port(base, http)
    assert not p <= http < p + DIST_PORT_SPAN
    assert 1 <= p and p + DIST_PORT_SPAN <= 65536
    if not base <= http < base + DIST_PORT_SPAN:
        assert p == base  # moved only when it has to


def test_each_rank_binds_its_own_worker_and_meets_at_worker_0():
    sl = Slice("s", "p", "z", "v4-16", "tpu-ubuntu2204-base", "READY",
               workers=(Worker(0, "10.0.0.2"), Worker(1, "10.0.0.3")))
    serve = Recipe.model_validate({"accelerator": "v4-16", "serve": {
        "model": "m", "cpu": True, "load_format": "dummy",
        "extra_args": ["--max-total-tokens", "4096"]}}).serve
    assert serve is not None
    cmds = {i: shlex.split(c) for i, c in rank_commands(serve, PLAN, sl, 29995).items()}
    for i, argv in cmds.items():
        flag = dict(zip(argv[3::2], argv[4::2], strict=False))
        assert argv[:3] == ["python", "-m", "sgl_jax.launch_server"]
        assert flag["--host"] == sl.workers[i].ip and flag["--node-rank"] == str(i)
        # 29995..30001 would hold 30000 (the HTTP port): moved past it
        assert flag["--dist-init-addr"] == "10.0.0.2:30001"
        assert argv[-2:] == ["--max-total-tokens", "4096"]
    with pytest.raises(UsageError, match="2 node"):
        rank_commands(serve, PLAN, Slice("s", "p", "z", "v4-8", "r", "READY",
                                         workers=(Worker(0, "10.0.0.2"),)), 20000)


def test_the_jax_coordinator_uses_the_serving_dist_port_when_given():
    """JAX's coordinator env (its bind address too) must name the --dist-init-addr port, or a
    moved port would leave the ranks knocking where nothing listens."""
    from tpuctl.ops.launch import LaunchSpec, coordinator_port

    sl = Slice("s", "p", "z", "v4-16", "r", "READY",
               workers=(Worker(0, "10.0.0.2"), Worker(1, "10.0.0.3")))
    rid = "s-20261130-000000-abcd"
    plain = LaunchSpec(command="true", env={}, workdir="work/x")
    assert plain.coordinator(sl, rid) == f"10.0.0.2:{coordinator_port(rid)}"
    port = dist_port(29995, 30000)
    serving = LaunchSpec(command="", env={}, workdir="work/x", coordinator_port=port)
    assert serving.coordinator(sl, rid) == "10.0.0.2:30001"


def test_a_recipe_with_refused_extra_args_is_refused_while_planning():
    recipe = Recipe.model_validate({"accelerator": "v4-16", "serve": {
        "model": "recipes/models/tiny-qwen2-cpu", "extra_args": ["--tp-size", "2"]}})
    with pytest.raises(UsageError, match="sets --tp-size"):
        plan_for(recipe, ROOT)


@pytest.mark.parametrize(("recipe", "layout"), [
    ("serve-sglang-cpu", ("new", "v4-16", 2, 8, 4)),
    ("serve-sglang-tpu", ("new", "v6e-16", 4, 16, 8)),
    ("serve-sglang-0.0.2-cpu", ("old", "v5litepod-1", 1, 1, 1)),
    ("serve-standin", ("new", "v6e-16", 4, 16, 16)),
])
def test_the_shipped_serving_recipes_plan_as_documented(recipe, layout, monkeypatch):
    from tpuctl.recipes.schema import load_recipe

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no hub: built-in configs
    r, _ = load_recipe(ROOT / "recipes" / f"{recipe}.yaml")
    plan = plan_for(r, ROOT)
    assert (plan.semantics, plan.accelerator, plan.nnodes, plan.tp, plan.dp) == layout
    argv = plan.argv_for(0, "10.0.0.2")
    assert ("--dp-size" in argv) == (plan.semantics == "new")  # 0.0.2 gets no --dp-size
    assert (ROOT / r.requirements).is_file() if r.requirements else r.serve.server != [
        "python", "-m", "sgl_jax.launch_server"]


def test_status_names_the_rank_that_went_down_first():
    """The real rank 0 may take itself down moments after a peer died: `down`, both ranks
    listed, and the first to go (by exit time, or a killed supervisor's last heartbeat)."""
    from tpuctl.ops.runs import RunStatus, parse_status_line

    url = "serve_url=http://10.0.0.2:30000"
    w0 = parse_status_line(0, f"run=r state=exited exit_code=137 ended_at=1000.8 {url}")
    w1 = parse_status_line(1, f"run=r state=dead exit_code=- ended_at=1000 {url}")
    st = RunStatus("s", "READY", (w0, w1), health_code=None)
    assert (st.serve_state, st.degraded_workers, st.first_down) == ("down", [0, 1], 1)
    assert st.to_dict()["first_down"] == 1
    alive = parse_status_line(0, f"run=r state=running exit_code=- ended_at=- {url}")
    st = RunStatus("s", "READY", (alive, w1), health_code="000")
    assert (st.serve_state, st.degraded_workers, st.first_down) == ("degraded", [1], 1)
    st = RunStatus("s", "READY", (alive, parse_status_line(1, f"run=r state=running {url}")),
                   health_code="200")
    assert (st.serve_state, st.first_down) == ("serving", None)
