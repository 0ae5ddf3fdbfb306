"""cost: what your tasks' nodes cost, from the cost ledger and the API."""

from __future__ import annotations

from typing import Annotated

import typer

from tpuctl.cli.options import EndpointOpt, JsonOpt, ProjectOpt, ZoneOpt, ports_for


def cost(
    since: Annotated[str | None, typer.Option(
        help="only the last e.g. 7d, 12h (default: everything in the ledger)",
        show_default=False)] = None,
    by: Annotated[str, typer.Option(help="one row per task (node name) or per UTC day: "
                                    "task or day")] = "task",
    json_: JsonOpt = False,
    api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> int:
    """What each task's nodes cost: running (a run was live), idle (up, no run) and lost
    (runs on preempted attempts) time and money, with totals."""
    from tpuctl.cli.render.cost import CostView
    from tpuctl.ops.cost import CostRequest
    from tpuctl.ops.cost import cost as op

    req = CostRequest(since=since, by=by)
    return CostView(json=json_).done(op(ports_for(api_endpoint, project, zone), req))
