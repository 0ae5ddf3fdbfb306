"""`tpuctl emulator serve|start|stop|status|faults|preempt`: the local TPU v2 API with
SSH-reachable workers, and the faults it injects on purpose. Each command parses its flags,
calls one function of `tpuctl.emulator.control` and renders its result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tpuctl.cli.options import JsonOpt, not_an_option
from tpuctl.config import EMULATOR_PROJECT, EMULATOR_ZONE
from tpuctl.errors import UsageError

if TYPE_CHECKING:
    # imported by each command (every tpuctl command line imports this module: ~4 ms)
    from tpuctl.emulator import control

app = typer.Typer(help="Run the local TPU emulator (REST API + SSH workers).",
                  no_args_is_help=True)

StateDirOpt = Annotated[Path | None, typer.Option("--state-dir",
                                                  help="where nodes and worker homes live "
                                                  "(default ~/.tpuctl/emulator)",
                                                  show_default=False)]
PortOpt = Annotated[int, typer.Option(help="REST port on 127.0.0.1 (0: pick a free one)")]
SshPortOpt = Annotated[int, typer.Option("--ssh-port",
                                         help="SSH port shared by all workers (0: free one)")]
DelayOpt = Annotated[float, typer.Option("--create-delay",
                                         help="seconds a node stays CREATING")]
FaultOpt = Annotated[list[str] | None, typer.Option(
    "--fault", metavar="KEY=VALUE", show_default=False,
    help="inject a fault (repeatable): api-error-rate=0.2, stockout-zones=Z1,Z2, "
    "stockout-mode=operation|request, create-delay=S, ssh-refuse-rate=R, ssh-drop-rate=R, "
    "ssh-drop-after=S, unreachable-workers=NODE:I[,NODE:I]; see docs/emulator.md")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", show_default=False,
    help="seed of the faults' random decisions (same seed + same requests = same faults)")]
AdminEndpointOpt = Annotated[str | None, typer.Option(
    "--api-endpoint", show_default=False, callback=not_an_option,
    help="the emulator's endpoint; default: the one running from --state-dir, else "
    "TPUCTL_API_ENDPOINT, else the one running from ~/.tpuctl/emulator")]


def _parse_faults(items: list[str] | None) -> dict[str, Any]:
    """Validate `--fault KEY=VALUE` options before anything starts (bad ones exit 2)."""
    from tpuctl.emulator.faults import FaultError, parse_assignments

    try:
        return parse_assignments(items or [])
    except FaultError as e:
        raise UsageError(str(e), hint="see `tpuctl emulator serve --help` and "
                         "docs/emulator.md#fault-injection") from None


def _options(port: int, ssh_port: int, create_delay: float, fault: list[str] | None,
             seed: int | None) -> control.ServeOptions:
    from tpuctl.emulator import control

    return control.ServeOptions(port, ssh_port, create_delay, tuple(fault or ()),
                                _parse_faults(fault), seed)


@app.command()
def serve(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
    fault: FaultOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Run the emulator in the foreground until interrupted."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    options = _options(port, ssh_port, create_delay, fault, seed)
    sd = control.private_state_dir(state_dir)
    control.serve(sd, options, lambda endpoint: view.listening(endpoint, sd))


@app.command()
def start(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
    fault: FaultOpt = None,
    seed: SeedOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to listen")] = 30.0,
    json_: JsonOpt = False,
) -> int:
    """Start the emulator in the background (idempotent) and print its endpoint.

    If it is already running, `--fault`/`--seed` are applied to it at run time."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    options = _options(port, ssh_port, create_delay, fault, seed)
    started = control.start(control.private_state_dir(state_dir), options, timeout=timeout)
    return view.StartView(json=json_).done(started)


@app.command()
def stop(
    state_dir: StateDirOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to exit")] = 30.0,
) -> int:
    """Stop the background emulator; its workers' processes end with it."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    stopped = control.stop(control.state_dir_of(state_dir), timeout=timeout)
    return view.StopView().done(stopped)


@app.command()
def status(state_dir: StateDirOpt = None, json_: JsonOpt = False) -> int:
    """Is the background emulator running, and where."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    st = control.status(control.state_dir_of(state_dir))
    return view.StatusView(json=json_).done(st)


@app.command()
def faults(
    assignments: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", show_default=False,
        help="faults to set (merged into the active ones); none: just show them")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="clear every fault first")] = False,
    seed: SeedOpt = None,
    api_endpoint: AdminEndpointOpt = None,
    state_dir: StateDirOpt = None,
    json_: JsonOpt = False,
) -> int:
    """Show, set or clear the running emulator's faults (see docs/emulator.md)."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    values = _parse_faults(assignments)
    target = control.admin_target(api_endpoint, state_dir)
    result = control.set_faults(target, values, clear=clear, seed=seed)
    return view.FaultsView(json=json_).done(result)


@app.command()
def preempt(
    node: Annotated[str, typer.Argument(help="node (task) name", show_default=False)],
    after: Annotated[float | None, typer.Option(
        "--after", min=0, show_default=False,
        help="preempt this many seconds from now (a timer in the emulator); default now")
    ] = None,
    project: Annotated[str, typer.Option("--project", envvar="TPUCTL_PROJECT",
                                         help="the node's project (env TPUCTL_PROJECT)",
                                         callback=not_an_option)] = EMULATOR_PROJECT,
    zone: Annotated[str, typer.Option("--zone", envvar="TPUCTL_ZONE",
                                      help="the node's zone (env TPUCTL_ZONE)",
                                      callback=not_an_option)] = EMULATOR_ZONE,
    api_endpoint: AdminEndpointOpt = None,
    state_dir: StateDirOpt = None,
    json_: JsonOpt = False,
) -> int:
    """Preempt an emulated node as GCP preempts a spot VM: PREEMPTED, its processes killed."""
    from tpuctl.cli.render import emulator as view
    from tpuctl.emulator import control

    target = control.admin_target(api_endpoint, state_dir)
    result = control.preempt(target, project, zone, node, after)
    return view.PreemptView(json=json_).done(result)
