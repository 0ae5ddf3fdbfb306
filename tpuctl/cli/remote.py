"""exec, ssh, ssh-config: reaching the workers of a node."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from tpuctl.cli import output
from tpuctl.cli.options import EndpointOpt, JsonOpt, NameArg, ProjectOpt, ZoneOpt, ports_for

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def worker_line_printer(json_mode: bool) -> Callable[[int, str, str], None]:
    """Print each worker's lines as they arrive, prefixed `[wN]` (coloured on a terminal)."""
    colour = output.stdout_is_tty() and not json_mode
    if colour:
        from rich.console import Console
        from rich.markup import escape

        out_console = Console(highlight=False, soft_wrap=True)
        err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def on_output(index: int, stream: str, line: str) -> None:
        if colour:
            c = _COLOURS[index % len(_COLOURS)]
            # under a live status line (`up`), above it: that console owns the terminal
            console = output.live_console() or (err_console if stream == "stderr"
                                                else out_console)
            console.print(f"[{c}]\\[w{index}][/{c}] {escape(line)}", highlight=False,
                          soft_wrap=True)
            return
        target = sys.stderr if (stream == "stderr" or json_mode) else sys.stdout
        target.write(f"[w{index}] {line}\n")
        target.flush()

    return on_output


def exec_(
    name: NameArg,
    command: Annotated[list[str], typer.Argument(help="the command, after --",
                                                 show_default=False)],
    worker: Annotated[str, typer.Option("--worker", "-w", help="all, an index, or e.g. 0,2-3")
                      ] = "all",
    timeout: Annotated[float | None, typer.Option(help="seconds per worker before giving up")
                       ] = None,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Run a command on workers in parallel; exit with the first failing worker's code."""
    import asyncio

    from tpuctl.naming import validate_node_name
    from tpuctl.ops.remote_exec import ExecRequest, build_command, run_exec
    from tpuctl.workers.select import parse_worker_selection

    build_command(command)
    validate_node_name(name)
    parse_worker_selection(worker, None)
    ports = ports_for(api_endpoint, project, zone)
    result = asyncio.run(run_exec(ports, ExecRequest(name, tuple(command), worker, timeout),
                                  worker_line_printer(json_)))
    if json_:
        output.print_json(result.to_dict())
    else:
        parts = []
        for r in result.results:
            if r.ok:
                parts.append(f"w{r.index} ok")
            elif r.error:
                parts.append(f"w{r.index} {r.error}")
            else:
                parts.append(f"w{r.index} exit {r.exit_code}")
        failed = [r for r in result.results if not r.ok]
        head = f"{len(result.results) - len(failed)}/{len(result.results)} workers ok"
        output.info(f"{head}: " + ", ".join(parts))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def ssh(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="optional command, after --",
                                                        show_default=False)] = None,
    worker: Annotated[int, typer.Option("--worker", "-w", help="worker index")] = 0,
    print_argv: Annotated[bool, typer.Option("--print", help="print the ssh argv, do not run")
                          ] = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Open an interactive shell on one worker with OpenSSH (host key pinned)."""
    import shlex

    from tpuctl.ops.ssh import ssh_argv

    ports = ports_for(api_endpoint, project, zone)
    argv = ssh_argv(ports, name, worker, command or [])
    if print_argv:
        output.out(shlex.join(argv))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def ssh_config(
    name: NameArg,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Print OpenSSH `Host NAME-wI` entries for every worker (append to ~/.ssh/config)."""
    from tpuctl.ops.ssh import ssh_config_text

    ports = ports_for(api_endpoint, project, zone)
    sys.stdout.write(ssh_config_text(ports, name))
