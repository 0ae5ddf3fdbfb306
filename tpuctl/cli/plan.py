"""`tpuctl plan serve`: check and print an sglang-jax layout before any slice is created."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli import output
from tpuctl.cli.options import JsonOpt

app = typer.Typer(
    help="Plan work on a slice without touching the cloud (tp/dp, memory, exact argv).",
    no_args_is_help=True,
)


@app.callback()
def _plan() -> None:
    """Plan work on a slice without touching the cloud (tp/dp, memory, exact argv)."""


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option("--model", help="local dir / config.json, or hub id "
                                       "org/name (HF_TOKEN from the environment)",
                                       show_default=False)],
    accel: Annotated[str, typer.Option("--type", help="accelerator type, e.g. v6e-16",
                                       show_default=False)],
    sglang_version: Annotated[str | None, typer.Option(
        "--sglang-version", help="sglang-jax version the workers run: main (default) or "
        "0.0.3rc0+ count every device in --tp-size; 0.0.2 counts one group",
        show_default=False)] = None,
    dp: Annotated[int | None, typer.Option("--dp", help="data-parallel groups (default: "
                                           "chosen by the planner)", show_default=False)] = None,
    port: Annotated[int, typer.Option(help="HTTP port of the server")] = 30000,
    dist_port: Annotated[int, typer.Option(help="--dist-init-addr port P on worker 0 "
                                           "(rank 0 also binds P+5, P+6)")] = 20000,
    worker0_ip: Annotated[str, typer.Option(help="worker 0's internal IP to put in the argv")
                          ] = "<worker0-ip>",
    cpu: Annotated[bool, typer.Option("--cpu", help="argv for the CPU emulator "
                                      "(--device cpu --attention-backend native)")] = False,
    json_: JsonOpt = False,
) -> None:
    """Pick tp/dp for a model on a slice, or refuse with the reason and what would work."""
    from tpuctl.recipes.models import load_model_config
    from tpuctl.recipes.planner import plan_serve

    cfg = load_model_config(model)
    plan = plan_serve(cfg, accel, dp=dp, sglang_version=sglang_version, port=port,
                      dist_port=dist_port)
    argv = plan.all_argv(worker0_ip, cpu=cpu)
    if cfg.source == "builtin":
        output.info(f"note: the hub is unreachable; using tpuctl's built-in config of {cfg.name}")
    if json_:
        output.print_json({**plan.to_dict(), "model_config": cfg.to_dict(), "argv": argv})
        return
    output.table(
        ["accelerator", "nodes", "devices", "--tp-size", "dp", "tp/dp", "weights/dev",
         "KV/dev", "KV tokens/group"],
        [[plan.accelerator, plan.nnodes, plan.devices, plan.tp, plan.dp, plan.tp_per_group,
          f"{plan.weight_bytes_per_device / 2**30:.1f} GiB",
          f"{plan.kv_budget_bytes_per_device / 2**30:.1f} GiB",
          f"{plan.kv_tokens_per_group:,}"]],
        title=f"{plan.model} ({plan.semantics} sglang-jax semantics)",
    )
    output.out("")
    for line in plan.explanation:
        output.out(f"- {line}")
    output.out("")
    for rank, args in enumerate(argv):
        output.out(f"# node-rank {rank}")
        output.out(_shell_join(args))


def _shell_join(args: list[str]) -> str:
    import shlex

    return " ".join(a if "<worker0-ip>" in a else shlex.quote(a) for a in args)
