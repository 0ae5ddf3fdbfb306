"""serve, forward, generate: a server on a slice's rank 0, started and reached from here."""

from __future__ import annotations

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
    ZoneOpt,
    ports_for,
    route_flags,
)
from tpuctl.defaults import DEFAULT_SERVE_PORT

PortOpt = Annotated[int, typer.Option(help="the server's port on worker 0")]


def forward(
    name: NameArg, port: PortOpt = DEFAULT_SERVE_PORT,
    local_port: Annotated[int | None, typer.Option(help="local port (default: same as --port;"
                                                   " 0 picks a free one)")] = None,
    api_endpoint: EndpointOpt = None, project: ProjectOpt = None, zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Forward 127.0.0.1:LOCAL here to rank 0's server over SSH, until Ctrl-C."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.serving import forward_stopped, forwarding
    from tpuctl.ops.endpoint import ForwardRequest
    from tpuctl.ops.endpoint import forward as op

    req = ForwardRequest(name=name, port=port, local_port=local_port)
    try:
        op(ports_for(api_endpoint, project, zone, via=way_in), req, lambda f: forwarding(name, f))
    except KeyboardInterrupt:
        forward_stopped()
    return 0


def generate(
    name: NameArg,
    prompt: Annotated[str, typer.Argument(help="the prompt text")],
    port: PortOpt = DEFAULT_SERVE_PORT,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="max new tokens")] = 32,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 0.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 120.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Send one /generate request to rank 0 and print the answer and its latency."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.serving import GenerateView
    from tpuctl.ops.endpoint import GenerateRequest, generate_node

    req = GenerateRequest(name=name, prompt=prompt, port=port, max_tokens=max_tokens,
                          temperature=temperature, timeout=timeout)
    ports = ports_for(api_endpoint, project, zone, via=way_in)
    return GenerateView(json=json_).done(generate_node(ports, req))


def serve(
    name: NameArg,
    model: Annotated[str, typer.Option(help="model path (in this repository) or hub id",
                                       show_default=False)],
    type_: Annotated[str, typer.Option("--type", "-t", help="accelerator type, e.g. v6e-16",
                                       show_default=False)],
    sglang_version: Annotated[str | None, typer.Option(help="sglang-jax version the argv "
                                                       "must suit (default: main)")] = None,
    dp: Annotated[int | None, typer.Option(help="data-parallel groups (default: planned)")
                  ] = None,
    port: PortOpt = DEFAULT_SERVE_PORT,
    python: Annotated[str, typer.Option(help="Python for the venv (sglang-jax needs ≥ 3.12)")
                      ] = "3.12",
    requirements: Annotated[str | None, typer.Option(help="requirements file in the "
                                                     "repository (e.g. pinning sglang-jax)")
                            ] = None,
    secrets: Annotated[str | None, typer.Option(help=".env with HF_TOKEN etc.")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="CPU flags (emulator)")] = False,
    load_format: Annotated[str | None, typer.Option(help="e.g. dummy")] = None,
    server: Annotated[str | None, typer.Option(help="the server program instead of "
                                               "`python -m sgl_jax.launch_server`")] = None,
    ready_timeout: Annotated[float, typer.Option(help="seconds until ready")] = 900.0,
    replace: Annotated[bool, typer.Option("--replace", help="restart a running server")
                       ] = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """The short form of a serving recipe: plan, create, sync, bootstrap, start every rank,
    wait until ready. Run it from your repository (it is synced to the workers)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.up import UpView
    from tpuctl.ops.serve import ServeRequest, serve_node

    req = ServeRequest(name=name, model=model, accelerator_type=type_,
                       sglang_version=sglang_version, dp=dp, port=port, python=python,
                       requirements=requirements, secrets=secrets, cpu=cpu,
                       load_format=load_format, server=server, ready_timeout=ready_timeout,
                       replace=replace)
    with UpView(json=json_, serve=True) as view:
        return view.done(serve_node(ports_for(api_endpoint, project, zone, via=way_in), req, view))
