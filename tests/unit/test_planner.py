"""The serve planner: model configs, tp/dp rules of both sglang-jax semantics, refusals with
alternatives that really work, the exact argv per node, and the `plan serve` command."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpuctl.accelerators import all_accelerator_types, parse_accelerator
from tpuctl.errors import ExitCode, UsageError
from tpuctl.recipes.models import (
    BUILTIN_CONFIGS,
    HubRefused,
    HubUnreachable,
    ModelConfig,
    config_from_dict,
    load_model_config,
)
from tpuctl.recipes.planner import PlanRefused, ServePlan, plan_serve, sglang_semantics

QWEN7 = config_from_dict(BUILTIN_CONFIGS["qwen/qwen2.5-7b-instruct"],
                         name="Qwen/Qwen2.5-7B-Instruct", source="builtin")
LLAMA70 = config_from_dict(BUILTIN_CONFIGS["meta-llama/meta-llama-3-70b"],
                           name="meta-llama/Meta-Llama-3-70B", source="builtin")


def unreachable(_: str) -> dict[str, object]:
    raise HubUnreachable("gaierror")


# ---------------------------------------------------------------- model configs


def test_param_counts_match_the_published_sizes():
    assert QWEN7.param_count == 7_615_616_512  # "7.61B"
    assert abs(LLAMA70.param_count - 70.55e9) < 0.01e9
    llama8 = config_from_dict(BUILTIN_CONFIGS["meta-llama/meta-llama-3-8b"], name="l",
                              source="builtin")
    assert abs(llama8.param_count - 8.03e9) < 0.01e9
    qwen05 = config_from_dict(BUILTIN_CONFIGS["qwen/qwen2.5-0.5b"], name="q", source="builtin")
    assert abs(qwen05.param_count - 0.494e9) < 0.001e9  # tied embeddings: no lm_head
    assert QWEN7.head_dim == 128 and QWEN7.weight_bytes == 2 * QWEN7.param_count


def test_local_directory_and_file(tmp_path: Path):
    cfg = {"num_attention_heads": 32, "hidden_size": 4096, "num_hidden_layers": 2,
           "intermediate_size": 11008, "vocab_size": 32000, "torch_dtype": "float32"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for spec in (str(tmp_path), str(tmp_path / "config.json")):
        m = load_model_config(spec, fetch=unreachable)
        assert m.source == "local" and m.name == str(tmp_path)
        assert (m.num_kv_heads, m.head_dim, m.bytes_per_param) == (32, 128, 4)


def test_local_errors_are_usage_errors(tmp_path: Path):
    with pytest.raises(UsageError, match="no config.json"):
        load_model_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(UsageError, match="num_attention_heads"):
        load_model_config(str(tmp_path))
    with pytest.raises(UsageError, match="no such model path"):
        load_model_config(str(tmp_path / "missing" / "deeper" / "x"))


def test_nested_text_config_and_fp8(tmp_path: Path):
    raw = {"model_type": "llava", "text_config": {
        "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 512,
        "num_hidden_layers": 2, "intermediate_size": 1024, "vocab_size": 1000},
        "quantization_config": {"quant_method": "fp8"}}
    m = config_from_dict(raw, name="x", source="local")
    assert (m.num_attention_heads, m.num_kv_heads, m.bytes_per_param, m.quantized) == (
        8, 2, 1.0, True)


def test_builtin_used_only_when_hub_unreachable_and_said_so():
    m = load_model_config("Qwen/Qwen2.5-7B-Instruct", fetch=unreachable)
    assert m.source == "builtin" and m.num_attention_heads == 28
    plan = plan_serve(m, "v6e-8")
    assert any("built-in" in line for line in plan.explanation)
    hub = dict(BUILTIN_CONFIGS["qwen/qwen2.5-7b-instruct"], num_attention_heads=28)
    m = load_model_config("Qwen/Qwen2.5-7B-Instruct", fetch=lambda _: hub)
    assert m.source == "hub"


def test_unknown_id_with_hub_unreachable_says_so_and_asks_for_a_local_path():
    with pytest.raises(UsageError) as e:
        load_model_config("someone/some-model", fetch=unreachable)
    assert "unreachable" in e.value.message and "local path" in (e.value.hint or "")


@pytest.mark.parametrize("status", [401, 403, 404])
def test_not_found_or_gated_even_for_builtin_ids(status: int):
    def refuse(_: str) -> dict[str, object]:
        raise HubRefused(status)

    with pytest.raises(UsageError, match="model id not found or gated — check the id / HF token"):
        load_model_config("meta-llama/Meta-Llama-3-70B", fetch=refuse)


class _Hub(BaseHTTPRequestHandler):
    seen_auth: list[str | None] = []

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        _Hub.seen_auth.append(self.headers.get("Authorization"))
        if self.path == "/org/good/resolve/main/config.json":
            body = json.dumps(BUILTIN_CONFIGS["qwen/qwen2.5-0.5b"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/org/gated/"):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture
def local_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    _Hub.seen_auth = []
    yield url
    srv.shutdown()


def test_real_http_fetch_with_token_that_never_leaks(local_hub: str, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    m = load_model_config("org/good")
    assert m.source == "hub" and m.num_attention_heads == 14
    assert _Hub.seen_auth == ["Bearer hf_secret_value"]
    for mid in ("org/gated", "org/missing"):
        with pytest.raises(UsageError) as e:
            load_model_config(mid)
        assert "not found or gated" in e.value.message
        assert "hf_secret_value" not in f"{e.value.message} {e.value.hint}"


def test_unreachable_hub_fails_fast(monkeypatch):
    import socket
    import time

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)  # accepts, never answers: the timeout must fire
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    t0 = time.monotonic()
    with pytest.raises(UsageError, match="unreachable"):
        load_model_config("org/whatever", timeout=0.5)
    assert time.monotonic() - t0 < 3
    s.close()


# ---------------------------------------------------------------- planner cases


def test_qwen7b_on_v6e16_is_a_four_node_plan_with_exact_argv():
    plan = plan_serve(QWEN7, "v6e-16")
    assert (plan.nnodes, plan.devices, plan.tp, plan.semantics) == (4, 16, 16, "new")
    assert plan.tp_per_group * plan.dp == 16 and 28 % plan.tp_per_group == 0
    assert (plan.tp_per_group, plan.dp) == (2, 8)  # default rule: >= 50% of HBM left for KV
    for rank in range(4):
        assert plan.argv_for(rank, "10.0.0.2") == [
            "python", "-m", "sgl_jax.launch_server", "--model-path",
            "Qwen/Qwen2.5-7B-Instruct", "--tp-size", "16", "--dp-size", "8",
            "--nnodes", "4", "--node-rank", str(rank), "--dist-init-addr", "10.0.0.2:20000",
            "--host", "0.0.0.0", "--port", "30000"]
    assert plan.rank0_ports == [20000, 20005, 20006]
    assert plan.weight_bytes_per_device == -(-QWEN7.weight_bytes // 2)
    assert plan.kv_tokens_total == plan.kv_tokens_per_group * plan.dp > 0
    with pytest.raises(UsageError):
        plan.argv_for(4, "10.0.0.2")
    with pytest.raises(UsageError):
        plan.argv_for(0)


def test_qwen7b_on_v6e8_is_single_host_without_dist_flags():
    plan = plan_serve(QWEN7, "v6e-8")
    assert plan.nnodes == 1 and plan.tp == 8
    argv = plan.argv_for(0)
    assert not {"--nnodes", "--node-rank", "--dist-init-addr"} & set(argv)
    assert argv[-4:] == ["--host", "0.0.0.0", "--port", "30000"]
    assert plan.argv_for(0, cpu=True)[-4:] == ["--device", "cpu", "--attention-backend",
                                               "native"]


def test_old_semantics_give_the_field_notes_tp4_dp4_and_no_dp_flag():
    plan = plan_serve(QWEN7, "v6e-16", sglang_version="0.0.2")
    assert (plan.semantics, plan.tp, plan.dp, plan.tp_per_group) == ("old", 4, 4, 4)
    argv = plan.argv_for(3, "10.0.0.2")
    assert argv[argv.index("--tp-size") + 1] == "4" and "--dp-size" not in argv


@pytest.mark.parametrize("version", [None, "0.0.2"])
def test_the_field_failure_tp16_on_v6e16_is_refused(version):
    with pytest.raises(PlanRefused) as e:
        plan_serve(QWEN7, "v6e-16", dp=1, sglang_version=version)
    assert "attention heads (28) must be divisible by tensor parallel size (16)" in e.value.message
    assert e.value.valid_dps == ([4, 8, 16] if version is None else [4])


def test_dp_that_breaks_head_divisibility_lists_valid_dps():
    with pytest.raises(PlanRefused) as e:
        plan_serve(QWEN7, "v6e-16", dp=2)
    assert "tp/dp = 8" in e.value.message and "(28)" in e.value.message
    assert e.value.valid_dps == [4, 8, 16]
    assert "4, 8, 16" in (e.value.hint or "")
    assert e.value.exit_code == ExitCode.USAGE


def test_dp_not_dividing_devices():
    with pytest.raises(PlanRefused, match="does not divide the 16 devices") as e:
        plan_serve(QWEN7, "v6e-16", dp=3)
    assert e.value.valid_dps == [4, 8, 16]


def test_llama70b_does_not_fit_on_v5litepod8_and_bigger_slices_are_offered():
    with pytest.raises(PlanRefused) as e:
        plan_serve(LLAMA70, "v5litepod-8")
    msg = e.value.message
    assert "does not fit on v5litepod-8" in msg and "128.0 GiB total" in msg
    assert e.value.suggested_types[0] == "v5litepod-16"
    assert "v6e-8" in e.value.suggested_types
    for t in e.value.suggested_types:
        plan_serve(LLAMA70, t)  # every suggestion really works
    assert "v5litepod-16" in (e.value.hint or "")


def test_kv_heads_are_replicated_past_their_count():
    plan = plan_serve(LLAMA70, "v6e-16")
    assert plan.tp_per_group == 16 and plan.kv_replicated and plan.kv_heads_per_device == 1


def test_no_split_at_all_under_old_semantics_points_at_main():
    with pytest.raises(PlanRefused) as e:
        plan_serve(QWEN7, "v6e-32", sglang_version="0.0.2")
    assert "sglang-jax >= 0.0.3rc0" in (e.value.hint or "")
    assert e.value.valid_dps == []
    for t in e.value.suggested_types:
        plan_serve(QWEN7, t, sglang_version="0.0.2")


@pytest.mark.parametrize("version,expected", [
    (None, "new"), ("main", "new"), ("0.0.3rc0", "new"), ("v0.0.3", "new"), ("0.1.0", "new"),
    ("0.0.0.dev0", "new"), ("0.0.2", "old"), ("0.0.1", "old"), ("old", "old"),
])
def test_version_semantics(version, expected):
    assert sglang_semantics(version)[0] == expected


def test_bad_version_and_ports():
    with pytest.raises(UsageError, match="unknown sglang-jax version"):
        plan_serve(QWEN7, "v6e-8", sglang_version="banana")
    with pytest.raises(UsageError, match="collides"):
        plan_serve(QWEN7, "v6e-8", port=20005)


# ---------------------------------------------------------------- invariants


def _model(heads: int, kv_div: int, head_dim: int, layers: int) -> ModelConfig:
    kv = heads // kv_div if heads % kv_div == 0 else heads
    hidden = heads * head_dim
    return ModelConfig(name="m", source="local", num_attention_heads=heads, num_kv_heads=kv,
                       head_dim=head_dim, num_layers=layers, hidden_size=hidden,
                       intermediate_size=hidden * 3, vocab_size=32000, dtype="bfloat16",
                       bytes_per_param=2, tie_word_embeddings=False)


SMALL_TYPES = [t.name for t in all_accelerator_types() if t.chips <= 256]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heads=st.sampled_from([1, 2, 3, 4, 6, 7, 8, 12, 14, 16, 20, 24, 28, 32, 40, 48, 52,
                              56, 64, 96, 128]),
       kv_div=st.sampled_from([1, 2, 4, 7, 8]), head_dim=st.sampled_from([64, 128, 256]),
       layers=st.integers(1, 120), accel=st.sampled_from(SMALL_TYPES),
       dp=st.one_of(st.none(), st.integers(1, 64)),
       version=st.sampled_from([None, "0.0.2"]))
def test_every_plan_obeys_the_rules_and_every_refusal_lists_only_valid_alternatives(
        heads, kv_div, head_dim, layers, accel, dp, version):
    model = _model(heads, kv_div, head_dim, layers)
    a = parse_accelerator(accel)
    try:
        plan = plan_serve(model, a, dp=dp, sglang_version=version)
    except PlanRefused as e:
        for good in e.valid_dps:
            _check(plan_serve(model, a, dp=good, sglang_version=version), model, a, version)
        for t in e.suggested_types:
            _check(plan_serve(model, t, sglang_version=version), model, parse_accelerator(t),
                   version)
        return
    _check(plan, model, a, version)
    if dp is not None:
        assert plan.dp == dp


def _check(plan: ServePlan, model: ModelConfig, a, version) -> None:
    devices = a.chips * (2 if a.generation.prefix in ("v2", "v3") else 1)
    assert plan.devices == devices and plan.nnodes == a.hosts
    assert plan.dp * plan.tp_per_group == devices
    assert model.num_attention_heads % plan.tp_per_group == 0
    assert plan.tp % plan.nnodes == 0
    if version is None:
        assert plan.tp == devices
    else:
        assert plan.tp == plan.tp_per_group
    assert plan.weight_bytes_per_device + plan.kv_budget_bytes_per_device <= (
        plan.usable_bytes_per_device)
    assert plan.kv_tokens_per_group >= 4096
    argv = plan.argv_for(plan.nnodes - 1, "10.0.0.2")
    assert argv[argv.index("--tp-size") + 1] == str(plan.tp)
    assert ("--dist-init-addr" in argv) == (plan.nnodes > 1)
    assert ("--dp-size" in argv) == (version is None)


# ---------------------------------------------------------------- CLI


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from tpuctl.cli import plan

    return CliRunner().invoke(plan.app, args)


def test_cli_plan_serve_json(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(BUILTIN_CONFIGS["qwen/qwen2.5-7b"]))
    r = _invoke(["serve", "--model", str(tmp_path), "--type", "v6e-16", "--json",
                 "--worker0-ip", "10.1.2.3"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["tp"], d["dp"], d["nnodes"]) == (16, 8, 4)
    assert d["argv"][2][d["argv"][2].index("--node-rank") + 1] == "2"
    assert "10.1.2.3:20000" in d["argv"][0]


def test_cli_plan_serve_text_and_refusal(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(BUILTIN_CONFIGS["qwen/qwen2.5-7b"]))
    r = _invoke(["serve", "--model", str(tmp_path), "--type", "v6e-8", "--cpu"])
    assert r.exit_code == 0, r.output
    assert "# node-rank 0" in r.output and "--device cpu" in r.output
    r = _invoke(["serve", "--model", str(tmp_path), "--type", "v6e-16", "--dp", "2"])
    assert isinstance(r.exception, PlanRefused)


def test_cli_through_main_if_registered(tmp_path: Path, capsys):
    import typer.main

    from tpuctl.cli.main import app, run

    if "plan" not in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        pytest.skip("plan is not registered in tpuctl.cli.main yet")
    llama = BUILTIN_CONFIGS["meta-llama/meta-llama-3-70b"]
    (tmp_path / "config.json").write_text(json.dumps(llama))
    rc = run(["plan", "serve", "--model", str(tmp_path), "--type", "v5litepod-8", "--json"])
    assert rc == ExitCode.USAGE
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "PlanRefused" and "v5litepod-16" in err["suggested_types"]
