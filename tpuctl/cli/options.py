"""Options shared by commands, and the ports a command's cloud options stand for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tpuctl.dryrun.transcript import Transcript
    from tpuctl.ops.ports import Ports
    from tpuctl.ops.route import RouteFlags

ENDPOINT_HELP = ("TPU v2 REST endpoint, e.g. the emulator's http://127.0.0.1:PORT "
                 "(env TPUCTL_API_ENDPOINT)")


def not_an_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None
                  ) -> str | None:
    """A value option must not swallow the next option: `--project --json` is a missing
    project, not the project "--json" (click hands over whatever token comes next)."""
    if value is not None and value.startswith("-"):
        name = (param.opts or [param.name or "option"])[0]
        raise typer.BadParameter(f"got the option {value!r} instead of a value (give "
                                 f"{name} VALUE)", ctx=ctx, param=param)
    return value


EndpointOpt = Annotated[str | None, typer.Option(
    "--api-endpoint", help=ENDPOINT_HELP, show_default=False, callback=not_an_option)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", help="GCP project (env TPUCTL_PROJECT)", show_default=False,
    callback=not_an_option)]
ZoneOpt = Annotated[str | None, typer.Option(
    "--zone", help="zone, e.g. us-east5-b (env TPUCTL_ZONE)", show_default=False,
    callback=not_an_option)]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
NameArg = Annotated[str, typer.Argument(help="node (task) name", show_default=False)]
# a worker selection (workers/select.py), with the `sSwW` of a multislice group's labels
WorkersOpt = Annotated[str, typer.Option(
    "--worker", "-w", help="all, an index, 0,2-3, or s1w0-3 in a multislice group")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="print the API requests and worker scripts this would send, in order, "
    "and change nothing")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
AnyOwnerOpt = Annotated[bool, typer.Option(
    "--any-owner", help="also another user's managed nodes (never unmanaged ones)")]


_WAY_IN = "Reaching workers (default: tpuctl.yaml's ssh: block)"
ProxyJumpOpt = Annotated[str | None, typer.Option(
    "--ssh-proxy-jump", metavar="USER@HOST[:PORT]", show_default=False,
    callback=not_an_option, rich_help_panel=_WAY_IN,
    help="reach the workers' internal IPs through this jump host (as ssh -J)")]
ProxyCommandOpt = Annotated[str | None, typer.Option(
    "--ssh-proxy-command", metavar="TEMPLATE", show_default=False, rich_help_panel=_WAY_IN,
    help="reach each worker through this command's stdin/stdout; placeholders {host} "
    "{port} {node} {worker} {zone} {project} {instance}")]
IapOpt = Annotated[bool, typer.Option(
    "--tunnel-through-iap", rich_help_panel=_WAY_IN,
    help="reach the workers through IAP (gcloud compute start-iap-tunnel)")]
InternalIpOpt = Annotated[bool, typer.Option(
    "--internal-ip", rich_help_panel=_WAY_IN,
    help="this machine is inside the VPC: connect to the workers' internal IPs")]


def route_flags(proxy_jump: str | None, proxy_command: str | None, iap: bool, internal_ip: bool
        ) -> RouteFlags:
    """A command's way-in flags as the wiring takes them (tpuctl/ops/route.py)."""
    from tpuctl.ops.route import RouteFlags

    return RouteFlags(internal_ip=internal_ip, proxy_jump=proxy_jump,
                      proxy_command=proxy_command, iap=iap)


def transcript_for(dry_run: bool) -> Transcript | None:
    """Where a --dry-run records what it would send (None: a real run)."""
    if not dry_run:
        return None
    from tpuctl.dryrun.transcript import Transcript

    return Transcript()


def ports_for(api_endpoint: str | None, project: str | None, zone: str | None, *,
              via: RouteFlags | None = None, dry_run: Transcript | None = None,
              read_api: bool = True) -> Ports:
    """The ports for these options (tpuctl/wiring.py; nothing heavy is imported yet)."""
    from tpuctl.wiring import ports

    return ports(api_endpoint, project, zone, via=via, dry_run=dry_run, read_api=read_api)


def can_ask() -> bool:
    """Whether a person can answer a confirmation (stdin is a terminal)."""
    import sys

    return sys.stdin.isatty()


def checked_run_id(value: str | None) -> str | None:
    """A RUN argument, checked before any API call: it names a directory on every worker."""
    if value is not None:
        from tpuctl.ops.launch import validate_run_id

        validate_run_id(value)
    return value
