"""`tpuctl config`: which cloud, project and zone commands would use, and why."""

from __future__ import annotations

from tpuctl.cli.options import EndpointOpt, JsonOpt, ProjectOpt, ZoneOpt


def config(
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """Show the resolved API endpoint, project, zone and connection persistence, each with
    its source, the tpuctl.yaml that was read, and where the API token comes from (never the
    token)."""
    from tpuctl.cli.render.misc import ConfigView
    from tpuctl.ops.settings import show_config

    return ConfigView(json=json_).done(show_config(api_endpoint, project, zone))
