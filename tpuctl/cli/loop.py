"""sync, secrets, bootstrap, launch, up, down, logs: the loop on a slice. Each command
parses its flags into a request, calls one ops function and hands the result to its view
(tpuctl/cli/render/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuctl.cli.options import (
    AnyOwnerOpt,
    DryRunOpt,
    EndpointOpt,
    IapOpt,
    InternalIpOpt,
    JsonOpt,
    NameArg,
    ProjectOpt,
    ProxyCommandOpt,
    ProxyJumpOpt,
    YesOpt,
    ZoneOpt,
    can_ask,
    checked_run_id,
    ports_for,
    route_flags,
    transcript_for,
)

logs_app = typer.Typer(help="Copy runs' logs home.", no_args_is_help=True)
secrets_app = typer.Typer(help="Push a .env to every worker (0600, via stdin), list key names.",
                          no_args_is_help=True)

RunArg = Annotated[str | None, typer.Argument(help="run id (default: the latest)",
                                              show_default=False, callback=checked_run_id)]
RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="recipe YAML",
                                                show_default=False)]


def sync(
    name: NameArg,
    ref: Annotated[str, typer.Option(help="branch, tag or commit to put on the workers")
                   ] = "HEAD",
    via: Annotated[str, typer.Option(help="origin (workers fetch from the remote) or bundle "
                                     "(stream it over SSH)")] = "bundle",
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty",
                                              help="sync the commit even with uncommitted "
                                              "changes (they are left out)")] = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Put every worker's ~/work/<repo> at one exact commit (git, never scp)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.loop import SyncView
    from tpuctl.ops.sync import SyncRequest, sync_node

    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, via=way_in, dry_run=transcript)
    req = SyncRequest(name=name, ref=ref, via=via, allow_dirty=allow_dirty)
    return SyncView(json=json_, transcript=transcript).done(sync_node(ports, req))


@secrets_app.command("push")
def secrets_push(
    name: NameArg,
    file: Annotated[str, typer.Argument(help="a .env file, or - for stdin")] = ".env",
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Send KEY=VALUE secrets to ~/.tpuctl/secrets.env (0600) on every worker."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    import sys

    from tpuctl.cli.render.loop import SecretsPushView
    from tpuctl.ops.secrets import SecretsPushRequest, push_node

    req = SecretsPushRequest(name=name, file=file,
                             stdin=sys.stdin.read() if file == "-" else None)
    result = push_node(ports_for(api_endpoint, project, zone, via=way_in), req)
    return SecretsPushView(json=json_).done(result)


@secrets_app.command("list")
def secrets_list(
    name: NameArg, json_: JsonOpt = False, api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None, zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Key names (never values) of the secrets on each worker."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.loop import SecretsListView
    from tpuctl.ops.secrets import list_node

    ports = ports_for(api_endpoint, project, zone, via=way_in)
    return SecretsListView(json=json_).done(list_node(ports, name))


def bootstrap(
    name: NameArg,
    python: Annotated[str | None, typer.Option(help="Python version for the venv, e.g. 3.11")
                      ] = None,
    requirements: Annotated[Path | None, typer.Option(help="requirements file to install",
                                                      show_default=False)] = None,
    install_project: Annotated[bool, typer.Option(
        "--install-project", help="pip install -e the synced repository itself (its "
        "pyproject.toml)")] = False,
    torch: Annotated[str | None, typer.Option(help="cpu: the CPU-only torch index")] = None,
    recipe: RecipeOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds for the whole bootstrap")] = 1800.0,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Build the venv on every worker (detached, retried, cached by a marker)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.loop import BootstrapView
    from tpuctl.ops.bootstrap import BootstrapRequest, bootstrap_node

    req = BootstrapRequest(name=name, python=python, requirements=requirements,
                           install_project=install_project, torch=torch, recipe=recipe,
                           timeout=timeout)
    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, via=way_in, dry_run=transcript)
    view = BootstrapView(json=json_, transcript=transcript)
    return view.done(bootstrap_node(ports, req, view.workers.update))


def launch(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="command after -- (or --recipe)",
                                                        show_default=False)] = None,
    recipe: RecipeOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="name the run")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="stop a live run first")] = False,
    force: Annotated[bool, typer.Option("--force", help="kill stale holders of the TPU "
                                        "devices and clear the libtpu lockfile")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="seconds the job may run; enforced on every worker (then exit 5 in tail)")
                       ] = None,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE for the job (repeatable; "
                                           "not for secrets or hyperparameters)")
                   ] = [],  # noqa: B006 - typer needs a literal default
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Start the job on every worker under setsid nohup and return at once with its run id."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.loop import LaunchView
    from tpuctl.ops.launch import LaunchRequest, launch_node

    req = LaunchRequest(name=name, command=tuple(command or ()), recipe=recipe, run_id=run_id,
                        replace=replace, force=force, timeout=timeout, env=tuple(env))
    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, via=way_in, dry_run=transcript)
    return LaunchView(json=json_, transcript=transcript).done(launch_node(ports, req))


def up(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/quickstart.yaml",
                                           show_default=False)],
    name: Annotated[str | None, typer.Option("--name", help="node name (default: the "
                                             "recipe's name or file stem)")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="stop a live run first")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="return after launch; do not tail")
                      ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="name the run")] = None,
    on_preempt: Annotated[str, typer.Option("--on-preempt", help="fail (exit 6) or recreate "
                                            "the node and run again")] = "fail",
    max_recreates: Annotated[int, typer.Option("--max-recreates", help="budget for "
                                               "--on-preempt recreate")] = 3,
    ready_timeout: Annotated[float | None, typer.Option(
        "--ready-timeout", help="seconds until ready (servers; default timeouts.ready)")
                             ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the API requests and worker scripts this would send, as "
        "for a node that does not exist yet; no API call, nothing changed")] = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """create → sync → secrets → bootstrap → launch → tail, skipping what is already done."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.up import UpView
    from tpuctl.ops.up import UpRequest, up_recipe

    req = UpRequest(recipe=recipe, name=name, replace=replace, detach=detach, run_id=run_id,
                    on_preempt=on_preempt, max_recreates=max_recreates,
                    ready_timeout=ready_timeout, zone=zone)
    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, via=way_in, dry_run=transcript, read_api=False)
    with UpView(json=json_, transcript=transcript) as view:
        return view.done(up_recipe(ports, req, view))


def down(
    name: NameArg,
    yes: YesOpt = False,
    any_owner: AnyOwnerOpt = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Stop the latest run (if any) and delete the node (yours, managed by tpuctl)."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.up import DownView
    from tpuctl.ops.down import DownRequest
    from tpuctl.ops.down import down as op

    req = DownRequest(name=name, yes=yes, can_ask=can_ask(), any_owner=any_owner)
    with DownView(name, json=json_) as view:
        return view.done(op(ports_for(api_endpoint, project, zone, via=way_in), req, view))


@logs_app.command("fetch")
def logs_fetch(
    name: NameArg, run: RunArg = None,
    dest: Annotated[Path | None, typer.Option(help="local directory (default "
                                              "~/.tpuctl/logs)", show_default=False)] = None,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
    ssh_proxy_jump: ProxyJumpOpt = None, ssh_proxy_command: ProxyCommandOpt = None,
    tunnel_through_iap: IapOpt = False, internal_ip: InternalIpOpt = False,
) -> int:
    """Copy every worker's log of a run to DEST/<node>/<run>/worker<i>.log."""
    way_in = route_flags(ssh_proxy_jump, ssh_proxy_command, tunnel_through_iap, internal_ip)
    from tpuctl.cli.render.loop import FetchView
    from tpuctl.ops.logs import FetchRequest, fetch_node

    req = FetchRequest(name=name, run_id=run, dest=dest)
    ports = ports_for(api_endpoint, project, zone, via=way_in)
    return FetchView(json=json_).done(fetch_node(ports, req))
