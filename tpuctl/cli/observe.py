"""tail, status, stop, runs, top: watching and stopping the runs on a slice.

A worker that cannot be reached is named per worker and in the exit code (255, as `exec`
says it); the other workers' results stand (docs/commands.md#exit-codes).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli.loop import RunArg
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


def tail(
    name: NameArg, run: RunArg = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="last N lines per worker")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow until every worker "
                                         "exits; exit with the job's code")] = False,
    worker: WorkersOpt = "all",
    api_endpoint: EndpointOpt = None, project: ProjectOpt = None, zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Interleave workers' logs with [wN] prefixes; --follow survives SSH drops."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.runs import TailView
    from tpuctl.ops.runs import TailRequest, tail_node

    req = TailRequest(name=name, run_id=run, lines=lines, follow=follow, workers=worker)
    view = TailView(follow=follow)
    return view.done(tail_node(ports_for(api_endpoint, project, zone, via=way_in), req, view.line))


def status(
    name: NameArg, run: RunArg = None,
    watch: Annotated[bool, typer.Option("--watch", help="refresh until the run ends; exit "
                                        "with its code")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Node state plus, per worker, the run's state (running, exited, hung, unreachable)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.runs import StatusView
    from tpuctl.ops.runs import StatusRequest, status_node

    req = StatusRequest(name=name, run_id=run, watch=watch, interval=interval)
    ports = ports_for(api_endpoint, project, zone, via=way_in)
    with StatusView(json=json_, watch=watch) as view:
        return view.done(status_node(ports, req, view.show))


def stop(
    name: NameArg, run: RunArg = None,
    grace: Annotated[float, typer.Option(help="seconds between TERM and KILL")] = 10.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """TERM then KILL the run's process group on every worker; clear the libtpu lockfile."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.runs import StopView
    from tpuctl.ops.launch import StopRequest, stop_node

    req = StopRequest(name=name, run_id=run, grace=grace)
    ports = ports_for(api_endpoint, project, zone, via=way_in)
    return StopView(json=json_).done(stop_node(ports, req))


def runs(
    name: NameArg, json_: JsonOpt = False, api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None, zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """The node's runs, newest first: id, state, start time, exit code."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.runs import RunsView
    from tpuctl.ops.runlist import list_node_runs

    ports = ports_for(api_endpoint, project, zone, via=way_in)
    return RunsView(json=json_).done(list_node_runs(ports, name))


def top(
    name: NameArg, run: RunArg = None,
    interval: Annotated[float, typer.Option(help="seconds between frames")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="one frame, then exit (255 when a "
                                       "worker could not be read)")] = False,
    expand: Annotated[bool, typer.Option("--expand", help="a row per worker on large nodes "
                                         "too (default: a row per 8 workers, worst values)")
                      ] = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Per worker, live: run state and age, heartbeat, host CPU, memory, load, TPU duty cycle
    and HBM per chip, the last log line. Ctrl-C leaves it (exit 0)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.top import TopView
    from tpuctl.ops.top import TopRequest, top_node

    req = TopRequest(name=name, interval=interval, once=once, run_id=run, expand=expand)
    with TopView(json=json_, live=not once) as view:
        return view.done(top_node(ports_for(api_endpoint, project, zone, via=way_in), req,
                                  view.show))
