"""Serving recipes: the planner's layout turned into one command per rank.

Each rank binds its own worker's address (not 0.0.0.0): on GCP that is the internal IP that
`tpuctl forward` reaches over SSH; on the emulator, where ranks share one kernel, it keeps
the ranks' ports apart.

What real sglang-jax refuses only after minutes of startup is refused here, locally, before
anything is created (docs/serving.md, "Upstream behaviour tpuctl works around").
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tpuctl.errors import UsageError
from tpuctl.model import DEFAULT_SERVE_PORT, Slice
from tpuctl.recipes.planner import ServePlan
from tpuctl.recipes.schema import Recipe, ServeSpec

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports
    from tpuctl.ops.up import UpEvents, UpResult

# flags the planner writes for every rank: a copy in extra_args would silently win (argparse
# keeps the last value) and break the layout on some ranks only
PLANNED_FLAGS = ("--model-path", "--tp-size", "--dp-size", "--nnodes", "--node-rank",
                 "--dist-init-addr", "--host", "--port", "--device", "--load-format")
# ports rank 0 binds from the dist-init port P: P (JAX coordinator, all interfaces), and
# sglang-jax's fixed ZMQ publisher/sync ports P+5 and P+6 (`PortArgs.init_new`)
DIST_PORT_SPAN = 7


def plan_for(recipe: Recipe, repo_root: Path) -> ServePlan:
    """Plan locally, before any API call: an impossible layout never starts anything."""
    from tpuctl.recipes.models import load_model_config
    from tpuctl.recipes.planner import plan_serve

    serve = recipe.serve
    assert serve is not None
    local = repo_root / serve.model
    cfg = load_model_config(str(local) if local.exists() else serve.model)
    plan = plan_serve(cfg, recipe.accelerator, dp=serve.dp,
                      sglang_version=serve.sglang_version, port=serve.port)
    check_extra_args(serve.extra_args, plan)
    # the argv names the model as the recipe does (relative paths resolve in the checkout)
    return dataclasses.replace(plan, model=serve.model)


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value the server's argparse would see for `flag` (the last one wins)."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def check_extra_args(extra: list[str], plan: ServePlan) -> None:
    """Refuse extra flags that the real server would reject (or that would undo the plan)."""
    for flag in PLANNED_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in extra):
            raise UsageError(f"serve.extra_args sets {flag}, which the planner sets for every "
                             "rank", hint="remove it; use serve.dp / serve.port / serve.model "
                             "/ serve.cpu / serve.load_format instead")
    mrr = _flag_value(extra, "--max-running-requests")
    if mrr is not None and plan.semantics == "new":
        try:
            n = int(mrr)
        except ValueError:
            raise UsageError(f"serve.extra_args: --max-running-requests {mrr!r} is not a "
                             "number", hint="give a whole number") from None
        if n < plan.dp:
            raise UsageError(
                f"serve.extra_args: --max-running-requests {n} is less than the plan's dp "
                f"({plan.dp}); sglang-jax refuses that at startup",
                hint=f"raise it to at least {plan.dp} (a multiple of {plan.dp}), or set serve.dp")
    if (plan.nnodes > 1 and "--enable-single-process" in extra
            and _flag_value(extra, "--mem-fraction-static") is None):
        raise UsageError(
            "serve.extra_args: --enable-single-process on several nodes fails at startup "
            "unless --mem-fraction-static is given (sglang-jax computes it from "
            "jax.process_count() before jax.distributed.initialize)",
            hint="add --mem-fraction-static (e.g. 0.1 on CPU), or drop --enable-single-process")


def dist_port(base: int, http_port: int) -> int:
    """The run's dist-init port, moved past the server's HTTP port when one of the ports rank
    0 binds (P..P+6) would be it."""
    if base <= http_port < base + DIST_PORT_SPAN:
        base = http_port + 1
    if base + DIST_PORT_SPAN > 65536:
        base = http_port - DIST_PORT_SPAN
    return base


def rank_commands(serve: ServeSpec, plan: ServePlan, sl: Slice, dist_port_base: int
                  ) -> dict[int, str]:
    if plan.nnodes != len(sl.workers):
        raise UsageError(f"the plan has {plan.nnodes} node(s) but {sl.name} has "
                         f"{len(sl.workers)} worker(s)",
                         hint="the recipe's accelerator and the node's type differ")
    plan = dataclasses.replace(plan, dist_port=dist_port(dist_port_base, plan.port))
    w0 = sl.workers[0].ip
    out = {}
    for w in sl.workers:
        argv = plan.argv_for(w.index, w0, cpu=serve.cpu, load_format=serve.load_format)
        argv = [*serve.server, *argv[3:], *serve.extra_args]  # [python, -m, module] → server
        if "--host" in argv:
            argv[argv.index("--host") + 1] = w.ip
        out[w.index] = shlex.join(argv)
    return out


@dataclass(frozen=True)
class ServeRequest:
    """`tpuctl serve`: a serving recipe given as flags."""

    name: str
    model: str
    accelerator_type: str
    sglang_version: str | None = None
    dp: int | None = None
    port: int = DEFAULT_SERVE_PORT
    python: str = "3.12"
    requirements: str | None = None
    secrets: str | None = None
    cpu: bool = False
    load_format: str | None = None
    server: str | None = None  # the server program instead of sglang-jax's launch_server
    ready_timeout: float = 900.0
    replace: bool = False


def serve_recipe(req: ServeRequest) -> Recipe:
    """The recipe the flags stand for (checked like a recipe file)."""
    from pydantic import ValidationError

    from tpuctl.accelerators import parse_accelerator
    from tpuctl.naming import validate_node_name

    validate_node_name(req.name)
    serve_extra = {"server": shlex.split(req.server)} if req.server else {}
    try:
        recipe = Recipe.model_validate({
            "name": req.name, "accelerator": req.accelerator_type, "python": req.python,
            "requirements": req.requirements, "secrets": req.secrets,
            "serve": {"model": req.model, "sglang_version": req.sglang_version, "dp": req.dp,
                      "port": req.port, "cpu": req.cpu, "load_format": req.load_format,
                      **serve_extra},
            "timeouts": {"ready": req.ready_timeout}})
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"invalid {field}: {err['msg'].removeprefix('Value error, ')}",
                         hint="see `tpuctl serve --help`") from None
    parse_accelerator(req.accelerator_type)
    return recipe


def serve_node(ports: Ports, req: ServeRequest, events: UpEvents | None = None) -> UpResult:
    """The `serve` command: plan, then `up`'s steps up to readiness, from this repository."""
    from tpuctl.ops.prepared import prepare
    from tpuctl.ops.up import UpOptions, up

    p = prepare(serve_recipe(req), req.name, Path.cwd() / "serve.yaml")
    return up(ports, p, UpOptions(replace=req.replace, follow=False), events)
