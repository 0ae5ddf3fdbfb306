"""The capacity and VM-option flags of `create` (gcloud's names), parsed into the data
tpuctl/capacity.py and tpuctl/vmoptions.py define. Bad values fail here, before any
configuration or API work (exit 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tpuctl.cli.options import not_an_option

if TYPE_CHECKING:
    from tpuctl.capacity import Capacity
    from tpuctl.vmoptions import VmOptions

_CAP = "Capacity"
_VM = "VM options"

ReservedOpt = Annotated[bool, typer.Option(
    "--reserved", help="use reserved capacity (any of the project's reservations in the zone)",
    rich_help_panel=_CAP)]
ReservationOpt = Annotated[str | None, typer.Option(
    "--reservation", help="use this reservation (NAME or projects/P/locations/Z/reservations/"
    "NAME); implies --queued", show_default=False, callback=not_an_option,
    rich_help_panel=_CAP)]
GuaranteedOpt = Annotated[bool, typer.Option(
    "--guaranteed", help="queued resource on the guaranteed tier; implies --queued",
    rich_help_panel=_CAP)]
ValidUntilOpt = Annotated[str | None, typer.Option(
    "--valid-until", help="give up queueing after this long, e.g. 6h (implies --queued)",
    show_default=False, callback=not_an_option, rich_help_panel=_CAP)]
ValidAfterOpt = Annotated[str | None, typer.Option(
    "--valid-after", help="do not provision before this long from now, e.g. 30m (implies "
    "--queued)", show_default=False, callback=not_an_option, rich_help_panel=_CAP)]
ServiceAccountOpt = Annotated[str | None, typer.Option(
    "--service-account", help="the VMs' service account EMAIL", show_default=False,
    callback=not_an_option, rich_help_panel=_VM)]
ScopesOpt = Annotated[list[str], typer.Option(
    "--scopes", help="access scopes: gcloud aliases or URLs, comma-separated (repeatable; "
    "default cloud-platform)", show_default=False, rich_help_panel=_VM)]
MetadataOpt = Annotated[list[str], typer.Option(
    "--metadata", help="node metadata KEY=VALUE (repeatable)", show_default=False,
    rich_help_panel=_VM)]
MetadataFileOpt = Annotated[list[str], typer.Option(
    "--metadata-from-file", help="node metadata KEY=FILE, e.g. startup-script=setup.sh "
    "(repeatable)", show_default=False, rich_help_panel=_VM)]
DataDiskOpt = Annotated[list[str], typer.Option(
    "--data-disk", help="attach a disk: source=DISK[,mode=read-only|read-write] (repeatable)",
    show_default=False, rich_help_panel=_VM)]

SlicesOpt = Annotated[int, typer.Option(
    "--slices", help="a multislice group of N nodes NAME-0..NAME-(N-1) through one queued "
    "resource; NAME then stands for all of them", rich_help_panel=_CAP)]


def capacity_from_flags(*, spot: bool, queued: bool, reserved: bool, reservation: str | None,
                        guaranteed: bool, valid_until: str | None,
                        valid_after: str | None) -> Capacity:
    from tpuctl.capacity import parse_capacity

    return parse_capacity(spot=spot, reserved=reserved, reservation=reservation,
                          guaranteed=guaranteed, valid_until=valid_until,
                          valid_after=valid_after, queued=queued)


def vm_from_flags(*, service_account: str | None, scopes: list[str], metadata: list[str],
                  metadata_from_file: list[str], data_disk: list[str]) -> VmOptions:
    from tpuctl.vmoptions import (
        VmOptions,
        parse_data_disk,
        parse_metadata,
        parse_scopes,
        parse_service_account,
    )

    return VmOptions(service_account=parse_service_account(service_account),
                     scopes=parse_scopes(scopes),
                     metadata=parse_metadata(metadata, metadata_from_file),
                     data_disks=tuple(parse_data_disk(d) for d in data_disk))
