"""create, list, describe, delete, accelerators."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tpuctl.cli import output
from tpuctl.cli.options import (
    EndpointOpt,
    JsonOpt,
    NameArg,
    ProjectOpt,
    ZoneOpt,
    not_an_option,
    ports_for,
)
from tpuctl.errors import CapacityError, UsageError
from tpuctl.model import Slice


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
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: Annotated[str | None, typer.Option(
        "--zone", help="zone, or zones to try in order on stockout: a,b,c (env TPUCTL_ZONE)",
        show_default=False, callback=not_an_option)] = None,
) -> None:
    """Create a task-named TPU VM (or reuse the managed one with the same spec) and wait for it."""
    from tpuctl.ops.create import CreateRequest, validate_request
    from tpuctl.ops.create import create_in_zone as do_create

    req = CreateRequest(name=name, accelerator_type=type_, runtime=runtime, spot=spot,
                        queued=queued, labels=tuple(label), wait=wait, timeout=timeout,
                        ttl=ttl)
    validate_request(req)  # bad input fails before any configuration or API work
    result = None
    zones = [z.strip() for z in zone.split(",")] if zone else [None]
    for i, z in enumerate(zones):
        ports = ports_for(api_endpoint, project, z)
        try:
            with output.progress(f"{name} ({type_} in {ports.cloud.zone})") as p:
                result = do_create(ports, req, progress=p.update)
            break
        except CapacityError as e:
            if i == len(zones) - 1:
                if len(zones) > 1:
                    e.message += f" (tried {', '.join(str(x) for x in zones)})"
                raise
            output.info(f"{ports.cloud.zone}: {e.message}; trying {zones[i + 1]}")
    assert result is not None
    if json_:
        output.print_json(result.to_dict())
        return
    sl = result.slice
    verb = "created" if result.created else "reused existing"
    output.info(f"{verb} {sl.name}: {sl.accelerator_type}, {sl.runtime_version}, {sl.state}, "
                f"{len(sl.workers)} worker(s) in {result.seconds:.1f}s")
    _print_workers(sl)


def list_(
    all_: Annotated[bool, typer.Option("--all", help="include nodes not managed by tpuctl")
                    ] = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """List TPU nodes (managed by tpuctl unless --all) with their owners."""
    from tpuctl.ops.nodes import list_nodes

    ports = ports_for(api_endpoint, project, zone)
    nodes = list_nodes(ports, include_unmanaged=all_).nodes
    if json_:
        output.print_json([n.to_dict() for n in nodes])
        return
    if not nodes:
        output.info(f"no {'' if all_ else 'managed '}nodes in "
                    f"{ports.cloud.project}/{ports.cloud.zone}")
        return
    output.table(
        ["NAME", "TYPE", "STATE", "RUNTIME", "WORKERS", "MANAGED", "OWNER"],
        [[n.name, n.accelerator_type, n.state, n.runtime_version, len(n.workers),
          "yes" if n.managed else "no", n.owner or "-"] for n in nodes],
    )
    unowned = [n.name for n in nodes if n.managed and n.owner is None]
    if unowned:
        output.info(f"no owner label (created before tpuctl recorded owners): "
                    f"{', '.join(unowned)}; they work as before, `gc` takes them only with "
                    "--any-owner")


def describe(
    name: NameArg,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Show a node's state, type, runtime and workers with their addresses."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.nodes import describe as do_describe

    validate_node_name(name)
    ports = ports_for(api_endpoint, project, zone)
    sl = do_describe(ports, name)
    if json_:
        output.print_json(sl.to_dict())
        return
    for key, value in (("name", sl.name), ("project", sl.project), ("zone", sl.zone),
                       ("type", sl.accelerator_type), ("runtime", sl.runtime_version),
                       ("state", sl.state), ("health", sl.health or "-"),
                       ("spot", "yes" if sl.spot else "no"),
                       ("managed", "yes" if sl.managed else "no"),
                       ("owner", sl.owner or "-"),
                       ("created", sl.create_time or "-")):
        output.out(f"{key:<9} {value}")
    _print_workers(sl)


def _print_workers(sl: Slice) -> None:
    output.table(["WORKER", "ADDRESS", "SSH PORT"],
                 [[f"w{w.index}", w.ip, w.ssh_port] for w in sl.workers])


AnyOwnerOpt = Annotated[bool, typer.Option(
    "--any-owner", help="also another user's managed nodes (never unmanaged ones)")]


def delete(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until it is gone")] = True,
    any_owner: AnyOwnerOpt = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Delete a node of yours managed by tpuctl (asks first on a terminal; needs --yes
    otherwise)."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.nodes import check_deletable
    from tpuctl.ops.nodes import delete as do_delete

    validate_node_name(name)
    if not yes and not sys.stdin.isatty():
        raise UsageError(f"refusing to delete {name!r} without --yes (stdin is not a terminal)",
                         hint=f"run `tpuctl delete {name} --yes`")
    ports = ports_for(api_endpoint, project, zone)
    sl = check_deletable(ports, name, any_owner=any_owner)
    if not yes and not typer.confirm(
        f"Delete {sl.name} ({sl.accelerator_type}, {len(sl.workers)} workers, {sl.state}) "
        f"in {sl.zone}?", default=False):
        output.info("not deleted")
        raise typer.Exit(1)
    with output.progress(f"deleting {name}") as p:
        result = do_delete(ports, sl, wait=wait, on_poll=lambda: p.update("DELETING"))
    if json_:
        output.print_json(result.to_dict())
    else:
        output.info(f"deleted {name} in {result.seconds:.1f}s" if wait
                    else f"deleting {name} (not waiting)")


def accelerators(json_: JsonOpt = False) -> None:
    """Accelerator types tpuctl knows: chips, hosts (workers), default runtime. No API call."""
    from tpuctl.accelerators import all_accelerator_types

    types = all_accelerator_types()
    if json_:
        output.print_json([{"type": a.name, "chips": a.chips, "hosts": a.hosts,
                            "chips_per_host": a.chips_per_host,
                            "default_runtime": a.default_runtime} for a in types])
        return
    output.table(["TYPE", "CHIPS", "HOSTS", "CHIPS/HOST", "DEFAULT RUNTIME"],
                 [[a.name, a.chips, a.hosts, a.chips_per_host, a.default_runtime]
                  for a in types])


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be deleted")
                       ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    any_owner: AnyOwnerOpt = False,
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Delete your leaked managed nodes: expired (--ttl), PREEMPTED or TERMINATED. Never
    others."""
    from tpuctl.ops import gc as op

    ports = ports_for(api_endpoint, project, zone)
    found, others = op.candidates(ports.cloud, any_owner=any_owner)
    if others and not json_:
        output.info(f"left alone, not yours: {', '.join(c.node.name for c in others)} "
                    "(--any-owner includes them)")
    if found and not dry_run and not yes and not sys.stdin.isatty():
        raise UsageError(f"refusing to delete {len(found)} node(s) without --yes (stdin is not "
                         "a terminal)", hint="run `tpuctl gc --dry-run` to see them, "
                         "`tpuctl gc --yes` to delete")
    if json_ and dry_run:
        output.print_json({"deleted": [], "candidates": [c.to_dict() for c in found],
                           "not_yours": [c.to_dict() for c in others]})
        return
    if not found:
        if json_:
            output.print_json({"deleted": [], "candidates": [],
                               "not_yours": [c.to_dict() for c in others]})
        else:
            output.info(f"nothing to collect in {ports.cloud.project}/{ports.cloud.zone}")
        return
    if not json_:
        output.table(["NAME", "STATE", "REASON"], [[c.node.name, c.node.state, c.reason]
                                                   for c in found])
    if dry_run:
        output.info(f"{len(found)} node(s) would be deleted (dry run)")
        return
    if not yes and not typer.confirm(f"Delete {len(found)} node(s)?", default=False):
        raise typer.Exit(1)
    deleted = op.collect(ports, found)
    if json_:
        output.print_json({"deleted": deleted, "candidates": [c.to_dict() for c in found],
                           "not_yours": [c.to_dict() for c in others]})
    else:
        output.info(f"deleted {len(deleted)} node(s): {', '.join(deleted)}")
