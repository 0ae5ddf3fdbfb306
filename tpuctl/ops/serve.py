"""Serving recipes: the planner's layout turned into one command per rank.

Each rank binds its own worker's address (not 0.0.0.0): on GCP that is the internal IP that
`tpuctl forward` reaches over SSH; on the emulator, where ranks share one kernel, it keeps
the ranks' ports apart.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from tpuctl.model import Slice
from tpuctl.recipes.schema import Recipe, ServeSpec


def plan_for(recipe: Recipe, repo_root: Path) -> Any:  # noqa: ANN401 - a ServePlan
    """Plan locally, before any API call: an impossible layout never starts anything."""
    from tpuctl.recipes.models import load_model_config
    from tpuctl.recipes.planner import plan_serve

    serve = recipe.serve
    assert serve is not None
    local = repo_root / serve.model
    cfg = load_model_config(str(local) if local.exists() else serve.model)
    plan = plan_serve(cfg, recipe.accelerator, dp=serve.dp,
                      sglang_version=serve.sglang_version, port=serve.port)
    # the argv names the model as the recipe does (relative paths resolve in the checkout)
    return dataclasses.replace(plan, model=serve.model)


def rank_commands(serve: ServeSpec, plan: Any, sl: Slice, dist_port: int  # noqa: ANN401
                  ) -> dict[int, str]:
    if plan.nnodes != len(sl.workers):
        from tpuctl.errors import UsageError

        raise UsageError(f"the plan has {plan.nnodes} node(s) but {sl.name} has "
                         f"{len(sl.workers)} worker(s)",
                         hint="the recipe's accelerator and the node's type differ")
    plan = dataclasses.replace(plan, dist_port=dist_port)
    w0 = sl.workers[0].ip
    out = {}
    for w in sl.workers:
        argv = plan.argv_for(w.index, w0, cpu=serve.cpu, load_format=serve.load_format)
        argv = [*serve.server, *argv[3:], *serve.extra_args]  # [python, -m, module] → server
        if "--host" in argv:
            argv[argv.index("--host") + 1] = w.ip
        out[w.index] = shlex.join(argv)
    return out
