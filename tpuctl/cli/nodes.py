"""create, list, describe, delete, gc, accelerators: flags → request → one ops call → view."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli.capacity_flags import (
    DataDiskOpt,
    GuaranteedOpt,
    MetadataFileOpt,
    MetadataOpt,
    ReservationOpt,
    ReservedOpt,
    ScopesOpt,
    ServiceAccountOpt,
    SlicesOpt,
    ValidAfterOpt,
    ValidUntilOpt,
    capacity_from_flags,
    vm_from_flags,
)
from tpuctl.cli.options import (
    AnyOwnerOpt,
    DryRunOpt,
    EndpointOpt,
    JsonOpt,
    NameArg,
    ProjectOpt,
    YesOpt,
    ZoneOpt,
    can_ask,
    not_an_option,
    ports_for,
    transcript_for,
)


def create(
    name: NameArg,
    type_: Annotated[str, typer.Option("--type", "-t", help="accelerator type, e.g. v6e-16",
                                       show_default=False)],
    runtime: Annotated[str, typer.Option(help="runtime version, or auto (by generation)")] = "auto",
    spot: Annotated[bool, typer.Option("--spot", help="spot (preemptible) capacity")] = False,
    queued: Annotated[bool, typer.Option("--queued", help="create through a queued resource")
                      ] = False,
    label: Annotated[list[str], typer.Option("--label", help="extra label KEY=VALUE (repeatable)")
                     ] = [],  # noqa: B006 - typer needs a literal default
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until READY")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for READY")] = 1800.0,
    ttl: Annotated[str | None, typer.Option(help="expire after e.g. 8h: `tpuctl gc` deletes "
                                            "it then")] = None,
    internal_ips: Annotated[bool, typer.Option(
        "--internal-ips", help="no external IPs: reach the workers from inside the VPC, "
        "through --ssh-proxy-jump or --tunnel-through-iap")] = False,
    network: Annotated[str | None, typer.Option(
        help="VPC network (default: the project's `default`)", show_default=False,
        callback=not_an_option)] = None,
    subnetwork: Annotated[str | None, typer.Option(
        help="subnetwork in the zone's region", show_default=False,
        callback=not_an_option)] = None,
    tags: Annotated[list[str], typer.Option(
        "--tags", help="network tags for firewall rules: a,b (repeatable)")
                    ] = [],  # noqa: B006 - typer needs a literal default
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: Annotated[str | None, typer.Option(
        "--zone", help="zone, or zones to try in order on stockout: a,b,c (env TPUCTL_ZONE)",
        show_default=False, callback=not_an_option)] = None,
    reserved: ReservedOpt = False,
    reservation: ReservationOpt = None,
    guaranteed: GuaranteedOpt = False,
    valid_until: ValidUntilOpt = None,
    valid_after: ValidAfterOpt = None,
    service_account: ServiceAccountOpt = None,
    scopes: ScopesOpt = [],  # noqa: B006 - typer needs a literal default
    metadata: MetadataOpt = [],  # noqa: B006
    metadata_from_file: MetadataFileOpt = [],  # noqa: B006
    data_disk: DataDiskOpt = [],  # noqa: B006
    slices: SlicesOpt = 1,
) -> int:
    """Create a task-named TPU VM (or reuse the managed one with the same spec) and wait for it."""
    from tpuctl.cli.render.nodes import CreateView
    from tpuctl.ops.create import CreateRequest, parse_zones
    from tpuctl.ops.create import create as op

    req = CreateRequest(name=name, accelerator_type=type_, runtime=runtime, spot=spot,
                        queued=queued, labels=tuple(label), wait=wait, timeout=timeout,
                        ttl=ttl, zones=parse_zones(zone),
                        capacity=capacity_from_flags(
                            spot=spot, queued=queued, reserved=reserved, reservation=reservation,
                            guaranteed=guaranteed, valid_until=valid_until,
                            valid_after=valid_after),
                        vm=vm_from_flags(service_account=service_account, scopes=scopes,
                                         metadata=metadata, metadata_from_file=metadata_from_file,
                                         data_disk=data_disk),
                        slices=slices, internal_ips=internal_ips, network=network,
                        subnetwork=subnetwork, tags=tuple(tags))
    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, None, dry_run=transcript, read_api=False)
    with CreateView(name, type_, json=json_, transcript=transcript) as view:
        return view.done(op(ports, req, view))


def list_(
    all_: Annotated[bool, typer.Option("--all", help="include nodes not managed by tpuctl")
                    ] = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """List TPU nodes (managed by tpuctl unless --all): owner, age, price per hour, cost so
    far, and how long your nodes have been idle (flagged past idle_warn)."""
    from tpuctl.cli.render.nodes import ListView
    from tpuctl.ops.nodes import list_nodes

    ports = ports_for(api_endpoint, project, zone)
    return ListView(json=json_).done(list_nodes(ports, include_unmanaged=all_))


def describe(
    name: NameArg,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """Show a node's state, type, runtime, price per hour, age, cost so far, and its workers
    with their addresses."""
    from tpuctl.cli.render.nodes import DescribeView
    from tpuctl.ops.nodes import describe as op

    return DescribeView(json=json_).done(op(ports_for(api_endpoint, project, zone), name))


def delete(
    name: NameArg,
    yes: YesOpt = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until it is gone")] = True,
    any_owner: AnyOwnerOpt = False,
    dry_run: DryRunOpt = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """Delete a node of yours managed by tpuctl (asks first on a terminal; needs --yes
    otherwise)."""
    from tpuctl.cli.render.nodes import DeleteView
    from tpuctl.ops.nodes import DeleteRequest, delete_node

    req = DeleteRequest(name=name, wait=wait, any_owner=any_owner, yes=yes or dry_run,
                        can_ask=can_ask())
    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, dry_run=transcript)
    with DeleteView(name, json=json_, transcript=transcript) as view:
        return view.done(delete_node(ports, req, view))


def accelerators(json_: JsonOpt = False) -> int:
    """Accelerator types tpuctl knows: chips, hosts (workers), default runtime. No API call."""
    from tpuctl.accelerators import all_accelerator_types
    from tpuctl.cli.render.nodes import AcceleratorsView

    return AcceleratorsView(json=json_).done(all_accelerator_types())


def gc(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="list what would be deleted and print the requests; delete nothing")
                       ] = False,
    yes: YesOpt = False,
    any_owner: AnyOwnerOpt = False,
    idle: Annotated[str | None, typer.Option(
        "--idle", help="also delete your nodes idle (up, no run) longer than this, e.g. 2h",
        show_default=False)] = None,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """Delete your leaked managed nodes: expired (--ttl), PREEMPTED or TERMINATED, and with
    --idle 2h those idle that long (every worker asked first). Never others."""
    from tpuctl.cli.render.nodes import GcView
    from tpuctl.ops.gc import GcRequest
    from tpuctl.ops.gc import gc as op

    transcript = transcript_for(dry_run)
    ports = ports_for(api_endpoint, project, zone, dry_run=transcript)
    req = GcRequest(any_owner=any_owner, yes=yes or dry_run, can_ask=can_ask(), idle=idle)
    with GcView(json=json_, transcript=transcript) as view:
        return view.done(op(ports, req, view))
