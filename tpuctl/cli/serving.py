"""forward, generate: reach a server running on a slice's rank 0 from this machine."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.loop import _run, render_step
from tpuctl.cli.options import EndpointOpt, JsonOpt, NameArg, ProjectOpt, ZoneOpt, ports_for

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

    ports = ports_for(api_endpoint, project, zone)

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
        _run(ports, name, go)
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

    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: do_generate(s, prompt, port=port,
                                                     max_new_tokens=max_tokens,
                                                     temperature=temperature, timeout=timeout))
    if json_:
        output.print_json(result.to_dict())
        return
    output.out(result.text)
    output.info(f"latency {result.latency * 1000:.0f} ms")


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
    port: PortOpt = 30000,
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
) -> None:
    """The short form of a serving recipe: plan, create, sync, bootstrap, start every rank,
    wait until ready. Run it from your repository (it is synced to the workers)."""
    import shlex
    from pathlib import Path

    from pydantic import ValidationError

    from tpuctl.errors import UsageError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import up as op
    from tpuctl.recipes.schema import Recipe

    validate_node_name(name)
    serve_extra = {"server": shlex.split(server)} if server else {}
    try:
        recipe = Recipe.model_validate({
            "name": name, "accelerator": type_, "python": python,
            "requirements": requirements, "secrets": secrets,
            "serve": {"model": model, "sglang_version": sglang_version, "dp": dp,
                      "port": port, "cpu": cpu, "load_format": load_format, **serve_extra},
            "timeouts": {"ready": ready_timeout}})
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"invalid {field}: {err['msg'].removeprefix('Value error, ')}",
                         hint="see `tpuctl serve --help`") from None
    from tpuctl.accelerators import parse_accelerator

    parse_accelerator(type_)
    prepared = op.prepare(recipe, name, Path.cwd() / "serve.yaml")
    ports = ports_for(api_endpoint, project, zone)
    with output.progress(name) as p:
        result = op.up(ports, prepared, replace=replace, follow=False,
                       on_step=lambda s: None if json_ else render_step(s),
                       on_line=lambda i, ln: None, on_state=p.update)
    if json_:
        output.print_json(result.to_dict())
        return
    output.info(f"serving at {result.url} (on the slice); `tpuctl generate {name} 'Hello'`")
    output.out(result.run_id)
