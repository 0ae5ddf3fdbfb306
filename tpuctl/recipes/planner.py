"""Plan an sglang-jax server on a slice: tp/dp, nodes, memory, and the exact argv per node.

The field failure this prevents: `--tp-size 16` on a v6e-16 for Qwen2.5-7B (28 heads) never
became ready. Every rule sglang-jax enforces at startup (minutes into a paid slice) is
checked here first, and a refusal lists what would work instead.

Rules (sglang-jax source; see docs/serving.md):
- `new` semantics (main after PR #939, tags v0.0.3rc0 and later): the mesh is
  `[dp, tp/dp]` over *all* JAX devices, so `--tp-size` = devices of the slice and
  `--dp-size` = dp; `num_attention_heads % (tp/dp) == 0`; `tp % nnodes == 0`.
- `old` semantics (0.0.2 on PyPI): the mesh is `[-1, tp]`, so `--tp-size` is the size of
  one group and dp = devices / tp is inferred; `--dp-size` must stay 1 (0.0.2 starts no
  scheduler otherwise); `num_attention_heads % tp == 0`; `tp % nnodes == 0`.
- weights are sharded over the tensor axis only: each device holds weights / (tp/dp); KV
  heads are replicated when tp/dp exceeds them (one per device).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tpuctl.accelerators import AcceleratorType, all_accelerator_types, parse_accelerator
from tpuctl.errors import UsageError
from tpuctl.model import DEFAULT_SERVE_PORT
from tpuctl.recipes.models import ModelConfig

Semantics = Literal["new", "old"]

GIB = 1 << 30
DEFAULT_PORT = DEFAULT_SERVE_PORT
DEFAULT_DIST_PORT = 20000
# sglang-jax's default share of device memory for weights + KV cache on TPU
# (ServerArgs.mem_fraction_static = 0.88 when not on CPU).
MEM_FRACTION_STATIC = 0.88
# Default: pick the smallest tp/dp whose weights leave at least half of that share for KV.
KV_RESERVE_FRACTION = 0.5
# A plan whose KV cache cannot hold this many tokens per dp group does not "fit".
MIN_KV_TOKENS = 4096
LAUNCH_MODULE = "sgl_jax.launch_server"
# PR #939 ("dp support") changed --tp-size from per-group to total; first tag with it.
NEW_SEMANTICS_SINCE = "0.0.3rc0"


class PlanRefused(UsageError):
    """An impossible request; `valid_dps` and `suggested_types` are known-good alternatives."""

    def __init__(self, message: str, hint: str | None = None, *,
                 valid_dps: list[int] | None = None,
                 suggested_types: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.valid_dps = valid_dps or []
        self.suggested_types = suggested_types or []

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["valid_dps"] = self.valid_dps
        d["suggested_types"] = self.suggested_types
        return d


def sglang_semantics(version: str | None) -> tuple[Semantics, str]:
    """Which tp/dp meaning `version` of sglang-jax has, and why (for the explanation)."""
    v = (version or "").strip().lower()
    if v in ("", "main", "latest", "head", "new"):
        return "new", (f"sglang-jax {version or 'main'} (after PR #939): --tp-size counts every "
                       "device of the slice, --dp-size splits it")
    if v in ("old", "legacy"):
        return "old", "sglang-jax 0.0.2 semantics: --tp-size is one group, dp is inferred"
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)(.*)$", v)
    if not m:
        raise UsageError(
            f"unknown sglang-jax version {version!r}",
            hint=f"use a version like 0.0.2 or {NEW_SEMANTICS_SINCE}, or main (the default)",
        )
    release = tuple(int(x) for x in m.groups()[:3])
    if release >= (0, 0, 3) or (release == (0, 0, 0) and "dev" in m.group(4)):
        # 0.0.0.dev0 is setuptools-scm's fallback for a source build without git metadata,
        # which only exists since the release pipeline moved to it (after PR #939).
        return "new", (f"sglang-jax {version} (>= {NEW_SEMANTICS_SINCE}, after PR #939): "
                       "--tp-size counts every device of the slice, --dp-size splits it")
    return "old", (f"sglang-jax {version} (before PR #939): --tp-size is one group's size, "
                   "dp = devices / tp is inferred, --dp-size is not passed")


def devices_per_chip(accel: AcceleratorType) -> int:
    """JAX devices per chip: v2/v3 expose each TensorCore, v4+ one (megacore) per chip."""
    return 2 if accel.generation.prefix in ("v2", "v3") else 1


@dataclass(frozen=True)
class _Option:
    """One tp/dp split of a slice, with its rule violations and memory budget."""

    tp_per_group: int
    dp: int
    violations: tuple[str, ...]
    weight_bytes_per_device: int
    kv_budget_bytes_per_device: int
    kv_heads_per_device: int
    kv_bytes_per_token_per_device: int
    kv_tokens_per_group: int
    fits: bool
    meets_reserve: bool

    @property
    def valid(self) -> bool:
        return not self.violations and self.fits


@dataclass(frozen=True)
class _Slice:
    accel: AcceleratorType
    devices: int
    nnodes: int
    hbm_bytes_per_device: int
    usable_bytes_per_device: int


def _slice(accel: AcceleratorType, mem_fraction_static: float) -> _Slice:
    dpc = devices_per_chip(accel)
    hbm = accel.generation.hbm_gib_per_chip * GIB // dpc
    return _Slice(accel, accel.chips * dpc, accel.hosts, hbm, int(hbm * mem_fraction_static))


def _option(model: ModelConfig, sl: _Slice, g: int, semantics: Semantics,
            kv_reserve_fraction: float, min_kv_tokens: int) -> _Option:
    heads, kv = model.num_attention_heads, model.num_kv_heads
    violations = []
    if sl.devices % g:
        violations.append(f"tp/dp ({g}) must divide the {sl.devices} devices")
    if heads % g:
        violations.append(f"attention heads ({heads}) must be divisible by tensor parallel "
                          f"size ({g})")
    tp = sl.devices if semantics == "new" else g
    if tp % sl.nnodes:
        violations.append(f"tp_size ({tp}) must be divisible by the number of nodes "
                          f"({sl.nnodes})")
    weights = math.ceil(model.weight_bytes / g)
    budget = sl.usable_bytes_per_device - weights
    kv_heads = 1 if g >= kv else math.ceil(kv / g)
    per_token = model.kv_bytes_per_token(kv_heads)
    tokens = max(0, budget) // per_token
    return _Option(
        tp_per_group=g, dp=max(1, sl.devices // g), violations=tuple(violations),
        weight_bytes_per_device=weights, kv_budget_bytes_per_device=max(0, budget),
        kv_heads_per_device=kv_heads, kv_bytes_per_token_per_device=per_token,
        kv_tokens_per_group=tokens, fits=tokens >= min_kv_tokens,
        meets_reserve=budget >= kv_reserve_fraction * sl.usable_bytes_per_device,
    )


def _options(model: ModelConfig, sl: _Slice, semantics: Semantics, kv_reserve_fraction: float,
             min_kv_tokens: int) -> list[_Option]:
    """Every divisor of the device count, smallest tp/dp (largest dp) first."""
    return [_option(model, sl, g, semantics, kv_reserve_fraction, min_kv_tokens)
            for g in _divisors(sl.devices)]


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _choose(opts: list[_Option]) -> tuple[_Option | None, str]:
    valid = [o for o in opts if o.valid]
    if not valid:
        return None, ""
    for o in valid:
        if o.meets_reserve:
            return o, "reserve"
    return valid[-1], "most-kv"


def _suggest_types(model: ModelConfig, accel: AcceleratorType, semantics: Semantics,
                   kv_reserve_fraction: float, mem_fraction_static: float,
                   min_kv_tokens: int, *, bigger_only: bool) -> list[str]:
    """Slices where a default plan exists: nearest of the same generation, then the
    smallest of each other generation."""
    same: list[AcceleratorType] = []
    other: dict[str, AcceleratorType] = {}
    here = _slice(accel, mem_fraction_static)
    for t in all_accelerator_types():
        sl = _slice(t, mem_fraction_static)
        if t.name == accel.name or (bigger_only and sl.hbm_bytes_per_device * sl.devices
                                    <= here.hbm_bytes_per_device * here.devices):
            continue
        if _choose(_options(model, sl, semantics, kv_reserve_fraction, min_kv_tokens))[0] is None:
            continue
        if t.generation.prefix == accel.generation.prefix:
            same.append(t)
        elif t.generation.prefix not in other or t.chips < other[t.generation.prefix].chips:
            other[t.generation.prefix] = t
    same.sort(key=lambda t: (abs(t.chips - accel.chips), t.chips < accel.chips))
    rest = sorted(other.values(), key=lambda t: (t.chips, t.name))
    return [t.name for t in same[:3]] + [t.name for t in rest[:4]]


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@dataclass(frozen=True)
class ServePlan:
    """A checked sglang-jax layout for one model on one slice, and how to launch it."""

    model: str  # --model-path
    model_source: str  # local | hub | builtin
    accelerator: str
    semantics: Semantics
    sglang_version: str | None
    devices: int
    nnodes: int
    devices_per_node: int
    tp: int  # the value of --tp-size (total devices under "new", one group under "old")
    dp: int  # data-parallel groups
    tp_per_group: int  # tp/dp: the tensor axis that shards weights and attention heads
    num_attention_heads: int
    num_kv_heads: int
    kv_heads_per_device: int
    kv_replicated: bool
    hbm_bytes_per_device: int
    usable_bytes_per_device: int  # hbm x mem_fraction_static
    weight_bytes: int
    weight_bytes_per_device: int
    kv_budget_bytes_per_device: int
    kv_bytes_per_token_per_device: int
    kv_tokens_per_group: int
    kv_tokens_total: int
    port: int = DEFAULT_PORT
    dist_port: int = DEFAULT_DIST_PORT
    explanation: list[str] = field(default_factory=list)

    @property
    def rank0_ports(self) -> list[int]:
        """Ports rank 0 binds besides --port: P (jax coordinator), P+5 and P+6 (pub/sync)."""
        return [self.dist_port, self.dist_port + 5, self.dist_port + 6] if self.nnodes > 1 else []

    def argv_for(self, rank: int, worker0_ip: str | None = None, *, cpu: bool = False,
                 python: str = "python", load_format: str | None = None) -> list[str]:
        """The exact argv node `rank` runs; every node runs the same one but for --node-rank.

        `cpu=True` adds what the CPU emulator needs (--device cpu --attention-backend native).
        """
        if not 0 <= rank < self.nnodes:
            raise UsageError(f"node rank {rank} is out of range for {self.nnodes} node(s)",
                             hint=f"use 0..{self.nnodes - 1}")
        argv = [python, "-m", LAUNCH_MODULE, "--model-path", self.model,
                "--tp-size", str(self.tp)]
        if self.semantics == "new":
            argv += ["--dp-size", str(self.dp)]
        if self.nnodes > 1:
            if not worker0_ip:
                raise UsageError("a multi-node plan needs worker 0's IP for --dist-init-addr",
                                 hint="pass worker0_ip (the internal IP of worker 0)")
            argv += ["--nnodes", str(self.nnodes), "--node-rank", str(rank),
                     "--dist-init-addr", f"{worker0_ip}:{self.dist_port}"]
        argv += ["--host", "0.0.0.0", "--port", str(self.port)]
        if cpu:
            argv += ["--device", "cpu", "--attention-backend", "native"]
        if load_format:
            argv += ["--load-format", load_format]
        return argv

    def all_argv(self, worker0_ip: str | None = None, *, cpu: bool = False,
                 python: str = "python", load_format: str | None = None) -> list[list[str]]:
        """argv_for every node rank, in order."""
        return [self.argv_for(r, worker0_ip, cpu=cpu, python=python, load_format=load_format)
                for r in range(self.nnodes)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rank0_ports"] = self.rank0_ports
        return d


def plan_serve(
    model_cfg: ModelConfig,
    accel: AcceleratorType | str,
    *,
    dp: int | None = None,
    sglang_version: str | None = None,
    kv_reserve_fraction: float = KV_RESERVE_FRACTION,
    mem_fraction_static: float = MEM_FRACTION_STATIC,
    min_kv_tokens: int = MIN_KV_TOKENS,
    port: int = DEFAULT_PORT,
    dist_port: int = DEFAULT_DIST_PORT,
) -> ServePlan:
    """Choose tp/dp for `model_cfg` on `accel`, or refuse with the reason and alternatives.

    Default (dp=None): among splits that satisfy every rule and fit, the smallest tp/dp
    (largest dp, most replicas) whose weights leave at least `kv_reserve_fraction` of the
    usable HBM for KV cache; if none does, the split with the most KV cache.
    """
    if isinstance(accel, str):
        accel = parse_accelerator(accel)
    if not 0 <= kv_reserve_fraction < 1 or not 0 < mem_fraction_static <= 1:
        raise UsageError("kv_reserve_fraction must be in [0, 1), mem_fraction_static in (0, 1]")
    if not (0 < port < 65536 and 0 < dist_port and dist_port + 6 < 65536):
        raise UsageError(f"bad ports: --port {port}, --dist-port {dist_port}",
                         hint="ports are 1..65535 and the dist port needs P+5 and P+6 free too")
    if port in (dist_port, dist_port + 5, dist_port + 6):
        raise UsageError(f"--port {port} collides with the dist ports {dist_port}, "
                         f"{dist_port + 5}, {dist_port + 6} that rank 0 binds",
                         hint="pick another --port or --dist-port")
    semantics, why_semantics = sglang_semantics(sglang_version)
    sl = _slice(accel, mem_fraction_static)
    opts = _options(model_cfg, sl, semantics, kv_reserve_fraction, min_kv_tokens)
    valid_dps = sorted(o.dp for o in opts if o.valid)
    heads = model_cfg.num_attention_heads

    def suggestions(bigger_only: bool) -> list[str]:
        return _suggest_types(model_cfg, accel, semantics, kv_reserve_fraction,
                              mem_fraction_static, min_kv_tokens, bigger_only=bigger_only)

    def alternatives_hint(types: list[str]) -> str:
        parts = []
        if valid_dps:
            parts.append(f"valid --dp values on {accel.name}: {', '.join(map(str, valid_dps))}")
        if types:
            parts.append(f"slices that fit: {', '.join(types)}")
        if not parts:
            parts.append("no listed slice fits this model; try a quantized checkpoint")
        return "; ".join(parts)

    chosen: _Option | None
    if dp is not None:
        if dp < 1 or sl.devices % dp:
            raise PlanRefused(
                f"--dp {dp} does not divide the {sl.devices} devices of {accel.name}",
                hint=alternatives_hint([] if valid_dps else suggestions(False)),
                valid_dps=valid_dps, suggested_types=[] if valid_dps else suggestions(False))
        chosen = next(o for o in opts if o.dp == dp)
        if chosen.violations:
            types = [] if valid_dps else suggestions(False)
            raise PlanRefused(
                f"--dp {dp} on {accel.name} gives tp/dp = {chosen.tp_per_group}: "
                + "; ".join(chosen.violations),
                hint=alternatives_hint(types), valid_dps=valid_dps, suggested_types=types)
        if not chosen.fits:
            types = [] if valid_dps else suggestions(True)
            raise PlanRefused(
                f"--dp {dp} on {accel.name}: {model_cfg.name} weights need "
                f"{_gib(chosen.weight_bytes_per_device)} per device with tp/dp = "
                f"{chosen.tp_per_group}, leaving room for {chosen.kv_tokens_per_group} KV tokens "
                f"of {_gib(sl.usable_bytes_per_device)} usable (need >= {min_kv_tokens})",
                hint=alternatives_hint(types), valid_dps=valid_dps, suggested_types=types)
        why_choice = f"dp={dp} as requested"
    else:
        chosen, how = _choose(opts)
        if chosen is None:
            rule_ok = [o for o in opts if not o.violations]
            if rule_ok:
                best = rule_ok[-1]
                types = suggestions(True)
                raise PlanRefused(
                    f"{model_cfg.name} does not fit on {accel.name}: "
                    f"{_gib(model_cfg.weight_bytes)} ({model_cfg.weight_bytes / 1e9:.1f} GB) of "
                    f"{model_cfg.dtype} weights, at best "
                    f"{_gib(best.weight_bytes_per_device)} per device (tp/dp = "
                    f"{best.tp_per_group}) vs {_gib(sl.usable_bytes_per_device)} usable of "
                    f"{_gib(sl.hbm_bytes_per_device)} HBM per device "
                    f"({sl.devices} x {_gib(sl.hbm_bytes_per_device)} = "
                    f"{_gib(sl.devices * sl.hbm_bytes_per_device)} total)",
                    hint=alternatives_hint(types), suggested_types=types)
            types = suggestions(False)
            reasons = [f"tp/dp={o.tp_per_group}: {o.violations[0]}" for o in opts]
            hint = alternatives_hint(types)
            if semantics == "old" and _choose(_options(
                    model_cfg, sl, "new", kv_reserve_fraction, min_kv_tokens))[0] is not None:
                hint += (f"; sglang-jax >= {NEW_SEMANTICS_SINCE} (--sglang-version main) "
                         f"can serve it on {accel.name}")
            raise PlanRefused(
                f"no tp/dp split of {accel.name} ({sl.devices} devices, {sl.nnodes} node(s)) "
                f"works for {model_cfg.name} under {semantics} semantics: "
                + "; ".join(reasons[:6]), hint=hint, suggested_types=types)
        g = chosen.tp_per_group
        pct = chosen.kv_budget_bytes_per_device / sl.usable_bytes_per_device
        if how == "reserve":
            smaller = [o for o in opts if not o.violations and o.fits
                       and o.tp_per_group < g]
            why_choice = (f"chose tp/dp={g} (dp={chosen.dp}): the smallest tp/dp (most "
                          f"replicas) whose weights leave >= {kv_reserve_fraction:.0%} of usable "
                          f"HBM for KV cache (leaves {pct:.1%})")
            if smaller:
                s = smaller[-1]
                s_pct = s.kv_budget_bytes_per_device / sl.usable_bytes_per_device
                why_choice += f"; tp/dp={s.tp_per_group} would leave only {s_pct:.1%}"
        else:
            why_choice = (f"chose tp/dp={g} (dp={chosen.dp}): no split leaves "
                          f"{kv_reserve_fraction:.0%} of usable HBM for KV cache, so the one "
                          f"with the most KV cache ({pct:.1%}); consider a bigger slice")

    g = chosen.tp_per_group
    tp = sl.devices if semantics == "new" else g
    tp_flag = (f"--tp-size {tp} --dp-size {chosen.dp}" if semantics == "new"
               else f"--tp-size {tp} (dp={chosen.dp} inferred, no --dp-size)")
    explanation = [
        f"{accel.name}: {accel.chips} chips = {sl.devices} JAX devices on {sl.nnodes} host(s), "
        f"{_gib(sl.hbm_bytes_per_device)} HBM per device; sglang-jax uses "
        f"{mem_fraction_static:.0%} (mem_fraction_static) = {_gib(sl.usable_bytes_per_device)}",
        f"{model_cfg.name} ({model_cfg.source} config): {model_cfg.param_count / 1e9:.2f} B "
        f"params x {model_cfg.bytes_per_param:g} B ({model_cfg.dtype}) = "
        f"{_gib(model_cfg.weight_bytes)} weights; {heads} attention heads, "
        f"{model_cfg.num_kv_heads} KV heads, head_dim {model_cfg.head_dim}",
        why_semantics,
        "valid tp/dp on this slice: " + (", ".join(
            f"{o.tp_per_group} (dp={o.dp})" for o in opts if o.valid) or "none"),
        why_choice,
        f"{tp_flag}: weights {_gib(chosen.weight_bytes_per_device)} per device "
        f"(weights / tp/dp), KV budget {_gib(chosen.kv_budget_bytes_per_device)} per device",
        f"KV cache: {chosen.kv_heads_per_device} KV head(s) per device"
        + (" (replicated: tp/dp > KV heads)" if g > model_cfg.num_kv_heads else "")
        + f", {chosen.kv_bytes_per_token_per_device} B per token per device -> "
        f"~{chosen.kv_tokens_per_group:,} tokens per dp group, "
        f"~{chosen.kv_tokens_per_group * chosen.dp:,} in total",
    ]
    if model_cfg.source == "builtin":
        explanation.insert(1, f"the hub was unreachable: used tpuctl's built-in copy of "
                              f"{model_cfg.name}'s config")
    if model_cfg.quantized or model_cfg.num_experts:
        explanation.append("weight size is an estimate (quantized or MoE config)")
    if sl.nnodes > 1:
        explanation.append(
            f"{sl.nnodes} nodes: every worker runs the same command with its own --node-rank; "
            f"rank 0 binds --dist-init-addr port {dist_port} and {dist_port + 5}, "
            f"{dist_port + 6}, and serves HTTP on {port}")
    else:
        explanation.append("single host: no --nnodes/--node-rank/--dist-init-addr")
    return ServePlan(
        model=model_cfg.name, model_source=model_cfg.source, accelerator=accel.name,
        semantics=semantics, sglang_version=sglang_version, devices=sl.devices,
        nnodes=sl.nnodes, devices_per_node=sl.devices // sl.nnodes, tp=tp, dp=chosen.dp,
        tp_per_group=g, num_attention_heads=heads, num_kv_heads=model_cfg.num_kv_heads,
        kv_heads_per_device=chosen.kv_heads_per_device,
        kv_replicated=g > model_cfg.num_kv_heads,
        hbm_bytes_per_device=sl.hbm_bytes_per_device,
        usable_bytes_per_device=sl.usable_bytes_per_device,
        weight_bytes=model_cfg.weight_bytes,
        weight_bytes_per_device=chosen.weight_bytes_per_device,
        kv_budget_bytes_per_device=chosen.kv_budget_bytes_per_device,
        kv_bytes_per_token_per_device=chosen.kv_bytes_per_token_per_device,
        kv_tokens_per_group=chosen.kv_tokens_per_group,
        kv_tokens_total=chosen.kv_tokens_per_group * chosen.dp,
        port=port, dist_port=dist_port, explanation=explanation,
    )
