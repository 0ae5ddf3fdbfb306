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
    """Show the resolved API endpoint, project, zone and connection persistence, each with
    its source, the tpuctl.yaml that was read, and where the API token comes from (never the
    token)."""
    from tpuctl.config import api_token, persist_setting, resolve

    cfg = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    token, source = api_token(cfg.endpoint.value)
    seconds, persist_source = persist_setting()
    shown: dict[str, dict[str, str | None]] = {
        **cfg.to_dict(),
        "api_token": {"value": "(set)" if token else None, "source": source},
        "persist_connections": {"value": f"{seconds:g}", "source": persist_source}}
    if json_:
        output.print_json(shown)
        return
    output.table(["SETTING", "VALUE", "SOURCE"],
                 [[k, v["value"] or "-", v["source"]] for k, v in shown.items()])
