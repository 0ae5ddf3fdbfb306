"""forward, generate, plan serve."""

from __future__ import annotations

import shlex

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.ops.endpoint import Forwarding, GenerateResult
from tpuctl.ops.plan import PlanReport


def forwarding(name: str, f: Forwarding) -> None:
    output.info(f"forwarding {f.url} → {name} w0 ({f.destination}); Ctrl-C to stop")
    output.out(f.url)


def forward_stopped() -> None:
    output.info("forward stopped")


class GenerateView(View[GenerateResult]):
    def text(self, result: GenerateResult) -> None:
        output.out(result.text)
        output.info(f"latency {result.latency * 1000:.0f} ms")


class PlanView(View[PlanReport]):
    def done(self, report: PlanReport) -> int:
        if report.model_config.source == "builtin":
            output.info(f"note: the hub is unreachable; using tpuctl's built-in config of "
                        f"{report.model_config.name}")
        return super().done(report)

    def text(self, report: PlanReport) -> None:
        plan = report.plan
        output.table(
            ["accelerator", "nodes", "devices", "--tp-size", "dp", "tp/dp", "weights/dev",
             "KV/dev", "KV tokens/group"],
            [[plan.accelerator, plan.nnodes, plan.devices, plan.tp, plan.dp,
              plan.tp_per_group, f"{plan.weight_bytes_per_device / 2**30:.1f} GiB",
              f"{plan.kv_budget_bytes_per_device / 2**30:.1f} GiB",
              f"{plan.kv_tokens_per_group:,}"]],
            title=f"{plan.model} ({plan.semantics} sglang-jax semantics)",
        )
        output.out("")
        for line in plan.explanation:
            output.out(f"- {line}")
        output.out("")
        for rank, args in enumerate(report.argv):
            output.out(f"# node-rank {rank}")
            output.out(" ".join(a if "<worker0-ip>" in a else shlex.quote(a) for a in args))
