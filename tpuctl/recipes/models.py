"""A model's shape, read from its Hugging Face `config.json`, for planning a server.

The planner needs only a few numbers (attention heads, KV heads, head dim, layers, sizes,
dtype); reading them up front lets tpuctl refuse an impossible tp/dp before a slice is
paid for. Sources, in order: a local directory or file; the hub (short timeout, `HF_TOKEN`
from the environment, never echoed); a small built-in table of well-known models, used only
when the hub cannot be reached, and said so.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tpuctl.errors import UsageError

HUB_TIMEOUT_S = 5.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

# bytes per parameter, by torch dtype name
_DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "float": 4, "fp32": 4,
    "bfloat16": 2, "float16": 2, "half": 2, "bf16": 2, "fp16": 2,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "fp8": 1, "int8": 1,
}

Source = Literal["local", "hub", "builtin"]


@dataclass(frozen=True)
class ModelConfig:
    """The numbers of a decoder-only transformer that decide how it can be sharded."""

    name: str  # what to pass to --model-path: the hub id or the local directory
    source: Source
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    dtype: str
    bytes_per_param: float
    tie_word_embeddings: bool
    attention_bias: bool = False
    num_experts: int = 0  # routed experts of a MoE model (0: dense)
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    quantized: bool = False
    model_type: str = ""

    @property
    def param_count(self) -> int:
        """Embeddings + per-layer attention (GQA) and MLP + norms + lm_head unless tied."""
        h, hd = self.hidden_size, self.head_dim
        q_out, kv_out = self.num_attention_heads * hd, self.num_kv_heads * hd
        attn = h * q_out + 2 * h * kv_out + q_out * h
        if self.attention_bias:
            attn += q_out + 2 * kv_out
        if self.num_experts:
            mlp = self.num_experts * 3 * h * (self.moe_intermediate_size or self.intermediate_size)
            mlp += 3 * h * self.shared_expert_intermediate_size + h * self.num_experts  # router
        else:
            mlp = 3 * h * self.intermediate_size  # gate, up, down
        per_layer = attn + mlp + 2 * h  # input and post-attention RMSNorm
        embed = self.vocab_size * h
        lm_head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.num_layers * per_layer + h + lm_head

    @property
    def weight_bytes(self) -> int:
        return int(self.param_count * self.bytes_per_param)

    def kv_bytes_per_token(self, kv_heads: int | None = None) -> int:
        """K and V for every layer of one token, for `kv_heads` heads (default: all)."""
        heads = self.num_kv_heads if kv_heads is None else kv_heads
        kv_dtype_bytes = max(2, int(self.bytes_per_param))  # KV cache stays bf16 under fp8
        return 2 * self.num_layers * heads * self.head_dim * kv_dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["param_count"] = self.param_count
        d["weight_bytes"] = self.weight_bytes
        return d


def config_from_dict(raw: Mapping[str, Any], *, name: str, source: Source) -> ModelConfig:
    """Read the fields the planner needs; a missing one is a clear UsageError, not a KeyError."""
    cfg: Mapping[str, Any] = raw
    if "num_attention_heads" not in cfg and isinstance(raw.get("text_config"), Mapping):
        cfg = raw["text_config"]  # multimodal configs nest the language model

    def need(*keys: str) -> int:
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        raise UsageError(
            f"model config of {name!r} has no usable {keys[0]!r}",
            hint="pass a decoder-only transformer's config.json (Llama, Qwen, Mistral ...)",
        )

    heads = need("num_attention_heads", "n_head", "num_heads")
    hidden = need("hidden_size", "n_embd", "d_model")
    kv = cfg.get("num_key_value_heads") or cfg.get("num_kv_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or raw.get("torch_dtype")
                or "bfloat16").removeprefix("torch.")
    bytes_per_param = _DTYPE_BYTES.get(dtype.lower(), 2.0)
    quant = raw.get("quantization_config") or cfg.get("quantization_config")
    quantized = isinstance(quant, Mapping)
    if isinstance(quant, Mapping):
        bits = quant.get("bits") or quant.get("weight_bits")
        method = str(quant.get("quant_method", "")).lower()
        if isinstance(bits, int) and bits > 0:
            bytes_per_param = bits / 8
        elif "fp8" in method or "int8" in method:
            bytes_per_param = 1.0
    experts = int(cfg.get("num_experts") or cfg.get("num_local_experts")
                  or cfg.get("n_routed_experts") or 0)
    model_type = str(cfg.get("model_type") or raw.get("model_type") or "")
    return ModelConfig(
        name=name,
        source=source,
        num_attention_heads=heads,
        num_kv_heads=int(kv),
        head_dim=int(head_dim),
        num_layers=need("num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=hidden,
        intermediate_size=int(cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden),
        vocab_size=need("vocab_size"),
        dtype=dtype,
        bytes_per_param=bytes_per_param,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings",
                                         raw.get("tie_word_embeddings", False))),
        attention_bias=bool(cfg.get("attention_bias", model_type == "qwen2")),
        num_experts=experts,
        moe_intermediate_size=int(cfg.get("moe_intermediate_size") or 0),
        shared_expert_intermediate_size=int(cfg.get("shared_expert_intermediate_size") or 0),
        quantized=quantized,
        model_type=model_type,
    )


def _builtin(heads: int, kv: int, hidden: int, layers: int, inter: int, vocab: int,
             tied: bool, model_type: str) -> dict[str, Any]:
    return {"num_attention_heads": heads, "num_key_value_heads": kv, "hidden_size": hidden,
            "num_hidden_layers": layers, "intermediate_size": inter, "vocab_size": vocab,
            "torch_dtype": "bfloat16", "tie_word_embeddings": tied, "model_type": model_type}


_QWEN7 = _builtin(28, 4, 3584, 28, 18944, 152064, False, "qwen2")
_QWEN05 = _builtin(14, 2, 896, 24, 4864, 151936, True, "qwen2")
_LLAMA8 = _builtin(32, 8, 4096, 32, 14336, 128256, False, "llama")
_LLAMA70 = _builtin(64, 8, 8192, 80, 28672, 128256, False, "llama")

# Copies of public config.json fields, for planning without network access. Keys are
# lower-case hub ids; Llama 3.1 shares Llama 3's shapes.
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen/qwen2.5-7b-instruct": _QWEN7,
    "qwen/qwen2.5-7b": _QWEN7,
    "qwen/qwen2.5-0.5b": _QWEN05,
    "qwen/qwen2.5-0.5b-instruct": _QWEN05,
    "meta-llama/meta-llama-3-8b": _LLAMA8,
    "meta-llama/meta-llama-3-8b-instruct": _LLAMA8,
    "meta-llama/llama-3.1-8b": _LLAMA8,
    "meta-llama/llama-3.1-8b-instruct": _LLAMA8,
    "meta-llama/meta-llama-3-70b": _LLAMA70,
    "meta-llama/meta-llama-3-70b-instruct": _LLAMA70,
    "meta-llama/llama-3.1-70b": _LLAMA70,
    "meta-llama/llama-3.1-70b-instruct": _LLAMA70,
}


class HubUnreachable(Exception):
    """The hub could not be asked (DNS, refused, timeout): not an answer about the model."""


class HubRefused(Exception):
    """The hub answered with an HTTP error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def hub_endpoint() -> str:
    """`HF_ENDPOINT` (as huggingface_hub reads it) or the public hub."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def fetch_hub_config(model_id: str, *, timeout: float = HUB_TIMEOUT_S) -> dict[str, Any]:
    """GET <hub>/<id>/resolve/main/config.json within `timeout` seconds overall.

    Runs in a daemon thread joined with a deadline, because urllib's timeout does not cover
    name resolution; the token is an unredirected header so it never follows a redirect to
    another host.
    """
    import urllib.error
    import urllib.request

    url = f"{hub_endpoint()}/{model_id}/resolve/main/config.json"
    req = urllib.request.Request(url, headers={"User-Agent": "tpuctl"})
    token = os.environ.get("HF_TOKEN")
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    result: dict[str, Any] = {}

    def get() -> None:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result["body"] = resp.read(1 << 20)
        except urllib.error.HTTPError as e:
            result["status"] = e.code
        except Exception as e:  # any transport failure means "unreachable"
            result["error"] = type(e).__name__

    t = threading.Thread(target=get, name="hf-config", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if t.is_alive() or "error" in result:
        raise HubUnreachable(result.get("error", "timeout"))
    if "status" in result:
        raise HubRefused(int(result["status"]))
    try:
        data = json.loads(result["body"])
    except (ValueError, KeyError) as e:
        raise HubUnreachable("the answer was not JSON") from e
    if not isinstance(data, dict):
        raise HubUnreachable("the answer was not a JSON object")
    return data


def _read_local(path: Path) -> ModelConfig:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"no config.json in {str(path)!r}",
                         hint="pass the model's directory (with config.json) or the file itself")
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {str(file)!r}: {e}",
                         hint="pass a valid Hugging Face config.json") from e
    if not isinstance(raw, dict):
        raise UsageError(f"{str(file)!r} is not a JSON object", hint="pass a config.json")
    name = str(path if path.is_dir() else path.parent)
    return config_from_dict(raw, name=name, source="local")


def load_model_config(
    spec: str,
    *,
    timeout: float = HUB_TIMEOUT_S,
    fetch: Callable[[str], dict[str, Any]] | None = None,
) -> ModelConfig:
    """Resolve `spec` (a local dir/file, or a hub id `org/name`) to a ModelConfig.

    `fetch` replaces the hub request in tests. A built-in copy is used only when the hub is
    unreachable; a 401/403/404 is an error even for a built-in id, because the server would
    fail the same way when it downloads the weights.
    """
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.exists():
        return _read_local(path)
    if not _HUB_ID.match(spec) or spec.startswith((".", "/", "~")):
        raise UsageError(f"no such model path {spec!r}",
                         hint="pass a local directory with config.json, or a hub id org/name")
    get = fetch or (lambda mid: fetch_hub_config(mid, timeout=timeout))
    try:
        return config_from_dict(get(spec), name=spec, source="hub")
    except HubRefused as e:
        if e.status in (401, 403, 404):
            raise UsageError(
                f"model id not found or gated — check the id / HF token ({spec!r}: "
                f"HTTP {e.status} from {hub_endpoint()})",
                hint="fix the id, or accept the license on the hub and export HF_TOKEN",
            ) from None
        failure = f"HTTP {e.status}"
    except HubUnreachable as e:
        failure = str(e)
    builtin = BUILTIN_CONFIGS.get(spec.lower())
    if builtin is not None:
        return config_from_dict(builtin, name=spec, source="builtin")
    raise UsageError(
        f"the Hugging Face hub is unreachable ({failure}), so {spec!r} cannot be checked",
        hint="pass a local path to the model's directory or config.json instead "
             "(built-in configs, used offline: Qwen/Qwen2.5-7B-Instruct, Qwen/Qwen2.5-0.5B, "
             "meta-llama/Meta-Llama-3-8B, meta-llama/Meta-Llama-3-70B and their "
             "-Instruct / Llama-3.1 twins)",
    )
