"""exec, ssh, ssh-config: reaching the workers of a node."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from tpuctl.cli.options import (
    EndpointOpt,
    IapOpt,
    InternalIpOpt,
    JsonOpt,
    NameArg,
    ProjectOpt,
    ProxyCommandOpt,
    ProxyJumpOpt,
    WorkersOpt,
    ZoneOpt,
    ports_for,
    route_flags,
)


def exec_(
    name: NameArg,
    command: Annotated[list[str], typer.Argument(help="the command, after --",
                                                 show_default=False)],
    worker: WorkersOpt = "all",
    timeout: Annotated[float | None, typer.Option(help="seconds per worker before giving up")
                       ] = None,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Run a command on workers in parallel; exit with the first failing worker's code."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.workers import ExecView, line_printer
    from tpuctl.ops.remote_exec import ExecRequest, exec_command

    req = ExecRequest(name=name, argv=tuple(command), workers=worker, timeout=timeout)
    ports = ports_for(api_endpoint, project, zone, via=way_in)
    result = exec_command(ports, req, line_printer(json_))
    return ExecView(json=json_).done(result)


def ssh(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="optional command, after --",
                                                        show_default=False)] = None,
    worker: Annotated[int, typer.Option("--worker", "-w", help="worker index")] = 0,
    slice_: Annotated[int | None, typer.Option(
        "--slice", help="slice of a multislice group (--worker then counts within it)",
        show_default=False)] = None,
    print_argv: Annotated[bool, typer.Option("--print", help="print the ssh argv, do not run")
                          ] = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Open an interactive shell on one worker with OpenSSH (host key pinned)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.workers import argv_line
    from tpuctl.ops.ssh import ssh_argv

    argv = ssh_argv(ports_for(api_endpoint, project, zone, via=way_in), name, worker,
                    command or [], slice_)
    if print_argv:
        argv_line(argv)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # this process becomes OpenSSH: its exit code is ssh's


def ssh_config(
    name: NameArg,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Print OpenSSH `Host NAME-wI` entries for every worker (append to ~/.ssh/config)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.workers import text_block
    from tpuctl.ops.ssh import ssh_config_text

    text_block(ssh_config_text(ports_for(api_endpoint, project, zone, via=way_in), name))
    return 0
