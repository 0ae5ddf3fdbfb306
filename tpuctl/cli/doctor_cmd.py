"""`tpuctl doctor [NAME]`: this machine's side, then the node's workers, in one matrix."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli.options import (
    EndpointOpt,
    IapOpt,
    InternalIpOpt,
    JsonOpt,
    ProjectOpt,
    ProxyCommandOpt,
    ProxyJumpOpt,
    ZoneOpt,
    ports_for,
    route_flags,
)


def doctor(
    name: Annotated[str | None, typer.Argument(
        help="node (task) name; without it, only this machine's checks",
        show_default=False)] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="the coordinator port each worker must reach on worker 0's "
        "internal address [default: 8476, and the port of the node's latest run]",
        show_default=False)] = None,
    port_timeout: Annotated[float, typer.Option(
        min=0.1, max=60, help="seconds before an unanswered port counts as filtered")] = 3.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Check credentials, the API, tpuctl's key, ssh config and the way in, then (with NAME)
    every worker: SSH latency, login, disk, TPU holders and lockfile, Python and venv
    support, jax/jaxlib/libtpu versions agreeing, clock, TPU metadata, the coordinator port.
    Exit 0 healthy (warnings allowed), 1 a check failed (each named with its fix)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.doctor import DoctorView
    from tpuctl.cloud.adc import adc_status
    from tpuctl.ops.doctor import DoctorRequest, credentials_check, run_doctor

    ports = ports_for(api_endpoint, project, zone, via=way_in)
    req = DoctorRequest(name=name, port=port, port_timeout=port_timeout)
    report = run_doctor(ports, req, credentials=lambda ep: credentials_check(ep, adc_status))
    return DoctorView(json=json_).done(report)
