"""`plan serve`: an sglang-jax layout for a model on a slice, checked before any slice is
created (tpuctl/recipes/planner.py). No API call."""

from __future__ import annotations

from dataclasses import dataclass

from tpuctl.model import DEFAULT_SERVE_PORT
from tpuctl.recipes.models import ModelConfig
from tpuctl.recipes.planner import DEFAULT_DIST_PORT, ServePlan


@dataclass(frozen=True)
class PlanServeRequest:
    model: str  # a local directory / config.json, or a hub id
    accelerator_type: str
    sglang_version: str | None = None
    dp: int | None = None
    port: int = DEFAULT_SERVE_PORT
    dist_port: int = DEFAULT_DIST_PORT
    worker0_ip: str = "<worker0-ip>"
    cpu: bool = False


@dataclass(frozen=True)
class PlanReport:
    plan: ServePlan
    model_config: ModelConfig
    argv: list[list[str]]  # per node rank

    def to_dict(self) -> dict[str, object]:
        return {**self.plan.to_dict(), "model_config": self.model_config.to_dict(),
                "argv": self.argv}


def plan_serve_command(req: PlanServeRequest) -> PlanReport:
    from tpuctl.recipes.models import load_model_config
    from tpuctl.recipes.planner import plan_serve

    cfg = load_model_config(req.model)
    plan = plan_serve(cfg, req.accelerator_type, dp=req.dp, sglang_version=req.sglang_version,
                      port=req.port, dist_port=req.dist_port)
    return PlanReport(plan, cfg, plan.all_argv(req.worker0_ip, cpu=req.cpu))
