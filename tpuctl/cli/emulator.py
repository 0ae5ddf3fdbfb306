"""`tpuctl emulator serve|start|stop|status|faults|preempt`: the local TPU v2 API with
SSH-reachable workers, and the faults it injects on purpose. Each command parses its flags,
calls one function of `tpuctl.emulator.control` and renders its result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.options import JsonOpt, not_an_option
from tpuctl.config import EMULATOR_PROJECT, EMULATOR_ZONE
from tpuctl.emulator import control
from tpuctl.errors import ExitCode, NotFoundError, UsageError

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


def _exports(info: dict[str, Any]) -> None:
    """What `eval "$(tpuctl emulator start)"` runs: the endpoint and where its token is (a
    path, never the token: it stays in the 0600 file)."""
    output.out(f"export TPUCTL_API_ENDPOINT={info['endpoint']}")
    if info.get("token_file"):
        import shlex

        output.out(f"export TPUCTL_API_TOKEN_FILE={shlex.quote(str(info['token_file']))}")


def _options(port: int, ssh_port: int, create_delay: float, fault: list[str] | None,
             seed: int | None) -> control.ServeOptions:
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
    options = _options(port, ssh_port, create_delay, fault, seed)
    sd = control.private_state_dir(state_dir)

    def ready(endpoint: str) -> None:
        output.out(f"tpuctl emulator listening on {endpoint} (state in {sd})")
        _exports({"endpoint": endpoint, "token_file": sd / "token"})

    control.serve(sd, options, ready)


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
) -> None:
    """Start the emulator in the background (idempotent) and print its endpoint.

    If it is already running, `--fault`/`--seed` are applied to it at run time."""
    options = _options(port, ssh_port, create_delay, fault, seed)
    started = control.start(control.private_state_dir(state_dir), options, timeout=timeout)
    if started.faults_applied:
        output.info("emulator already running: faults applied to it")
    if json_:
        output.print_json(control.public_info(started.info))
        return
    output.info(f"emulator running (pid {started.info['pid']}), state in {started.state_dir}")
    _exports(started.info)


@app.command()
def stop(
    state_dir: StateDirOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to exit")] = 30.0,
) -> None:
    """Stop the background emulator; its workers' processes end with it."""
    stopped = control.stop(control.state_dir_of(state_dir), timeout=timeout)
    if stopped.pid is None:
        output.info("emulator not running")
    else:
        output.info(f"emulator stopped (pid {stopped.pid})")


@app.command()
def status(state_dir: StateDirOpt = None, json_: JsonOpt = False) -> None:
    """Is the background emulator running, and where."""
    st = control.status(control.state_dir_of(state_dir))
    if json_:
        output.print_json(st.to_dict())
        if st.info is None:
            raise typer.Exit(int(ExitCode.NOT_FOUND))
        return
    if st.info is None:
        raise NotFoundError("emulator not running", hint="start it with `tpuctl emulator start`")
    output.out(f"running: pid {st.info['pid']}, endpoint {st.info['endpoint']}, "
               f"state in {st.state_dir}")


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
) -> None:
    """Show, set or clear the running emulator's faults (see docs/emulator.md)."""
    values = _parse_faults(assignments)
    target = control.admin_target(api_endpoint, state_dir)
    result = control.set_faults(target, values, clear=clear, seed=seed)
    if json_:
        output.print_json(result.to_dict())
        return
    output.out(f"seed {result.seed}")
    if not result.faults:
        output.out("no faults")
    for key, value in result.faults.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else value
        output.out(f"{key}={shown}")


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
) -> None:
    """Preempt an emulated node as GCP preempts a spot VM: PREEMPTED, its processes killed."""
    target = control.admin_target(api_endpoint, state_dir)
    result = control.preempt(target, project, zone, node, after)
    if json_:
        output.print_json(result.to_dict())
        return
    if after is not None:
        output.info(f"node {node} will be preempted in {after:g}s")
    else:
        output.info(f"node {node} preempted")
