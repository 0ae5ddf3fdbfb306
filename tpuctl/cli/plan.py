"""`tpuctl plan serve`: check and print an sglang-jax layout before any slice is created."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli.options import JsonOpt
from tpuctl.defaults import DEFAULT_SERVE_PORT

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
    port: Annotated[int, typer.Option(help="HTTP port of the server")] = DEFAULT_SERVE_PORT,
    dist_port: Annotated[int, typer.Option(help="--dist-init-addr port P on worker 0 "
                                           "(rank 0 also binds P+5, P+6)")] = 20000,
    worker0_ip: Annotated[str, typer.Option(help="worker 0's internal IP to put in the argv")
                          ] = "<worker0-ip>",
    cpu: Annotated[bool, typer.Option("--cpu", help="argv for the CPU emulator "
                                      "(--device cpu --attention-backend native)")] = False,
    json_: JsonOpt = False,
) -> int:
    """Pick tp/dp for a model on a slice, or refuse with the reason and what would work."""
    from tpuctl.cli.render.serving import PlanView
    from tpuctl.ops.plan import PlanServeRequest, plan_serve_command

    req = PlanServeRequest(model=model, accelerator_type=accel, sglang_version=sglang_version,
                           dp=dp, port=port, dist_port=dist_port, worker0_ip=worker0_ip,
                           cpu=cpu)
    return PlanView(json=json_).done(plan_serve_command(req))
