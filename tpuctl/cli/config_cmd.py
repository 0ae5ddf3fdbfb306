"""`tpuctl config`: which cloud, project and zone commands would use, and why."""

from __future__ import annotations

from tpuctl.cli import output
from tpuctl.cli.options import EndpointOpt, JsonOpt, ProjectOpt, ZoneOpt


def config(
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Show the resolved API endpoint, project and zone, each with its source."""
    from tpuctl.config import resolve

    cfg = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    if json_:
        output.print_json(cfg.to_dict())
        return
    output.table(["SETTING", "VALUE", "SOURCE"],
                 [[k, v["value"] or "-", v["source"]] for k, v in cfg.to_dict().items()])
