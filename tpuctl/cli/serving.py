"""forward, generate: reach a server running on a slice's rank 0 from this machine."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.loop import _run
from tpuctl.cli.options import EndpointOpt, JsonOpt, NameArg, ProjectOpt, ZoneOpt, cloud_for

PortOpt = Annotated[int, typer.Option(help="the server's port on worker 0")]


def forward(
    name: NameArg, port: PortOpt = 30000,
    local_port: Annotated[int | None, typer.Option(help="local port (default: same as --port;"
                                                   " 0 picks a free one)")] = None,
    api_endpoint: EndpointOpt = None, project: ProjectOpt = None, zone: ZoneOpt = None,
) -> None:
    """Forward 127.0.0.1:LOCAL here to rank 0's server over SSH, until Ctrl-C."""
    import asyncio

    from tpuctl.ops.endpoint import open_forward

    cloud = cloud_for(api_endpoint, project, zone)

    async def go(session: Any) -> None:  # noqa: ANN401
        listener, local = await open_forward(
            session, port=port, local_port=port if local_port is None else local_port)
        output.info(f"forwarding http://127.0.0.1:{local} → {name} w0 "
                    f"({session.slice.workers[0].ip}:{port}); Ctrl-C to stop")
        output.out(f"http://127.0.0.1:{local}")
        try:
            await asyncio.Event().wait()
        finally:
            listener.close()

    try:
        _run(go, cloud, name)
    except KeyboardInterrupt:
        output.info("forward stopped")


def generate(
    name: NameArg,
    prompt: Annotated[str, typer.Argument(help="the prompt text")],
    port: PortOpt = 30000,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="max new tokens")] = 32,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 0.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 120.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Send one /generate request to rank 0 and print the answer and its latency."""
    from tpuctl.ops.endpoint import generate as do_generate

    cloud = cloud_for(api_endpoint, project, zone)
    result = _run(lambda s: do_generate(s, prompt, port=port, max_new_tokens=max_tokens,
                                        temperature=temperature, timeout=timeout), cloud, name)
    if json_:
        output.print_json(result.to_dict())
        return
    output.out(result.text)
    output.info(f"latency {result.latency * 1000:.0f} ms")
