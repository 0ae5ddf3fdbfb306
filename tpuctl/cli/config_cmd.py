"""`tpuctl config`: which cloud, project and zone commands would use, and why."""

from __future__ import annotations

from tpuctl.cli.options import EndpointOpt, JsonOpt, ProjectOpt, ZoneOpt, ports_for


def config(
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """Show the resolved API endpoint, project, zone and connection persistence, each with
    its source, the tpuctl.yaml that was read, where the API token comes from (never the
    token), how workers are reached, and whether logins use OS Login (and why)."""
    from tpuctl.cli.render.misc import ConfigView
    from tpuctl.ops.access import login_mode
    from tpuctl.ops.settings import show_config

    ports = ports_for(api_endpoint, project, zone)
    return ConfigView(json=json_).done(show_config(
        api_endpoint, project, zone, route=ports.route,
        login=lambda: login_mode(ports.cloud, {})))
