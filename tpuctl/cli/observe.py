"""tail, status, stop, runs: watching and stopping the runs on a slice.

A worker that cannot be reached is named per worker and in the exit code (255, as `exec`
says it); the other workers' results stand (docs/commands.md#exit-codes).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.loop import RunArg, _run
from tpuctl.cli.options import EndpointOpt, JsonOpt, NameArg, ProjectOpt, ZoneOpt, ports_for
from tpuctl.cli.remote import worker_line_printer


def tail(
    name: NameArg, run: RunArg = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="last N lines per worker")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow until every worker "
                                         "exits; exit with the job's code")] = False,
    worker: Annotated[str, typer.Option("--worker", "-w", help="all, or e.g. 0,2-3")] = "all",
    api_endpoint: EndpointOpt = None, project: ProjectOpt = None, zone: ZoneOpt = None,
) -> None:
    """Interleave workers' logs with [wN] prefixes; --follow survives SSH drops."""
    from tpuctl.ops import runs as op
    from tpuctl.workers.select import parse_worker_selection

    parse_worker_selection(worker, None)
    ports = ports_for(api_endpoint, project, zone)
    printer = worker_line_printer(False)

    async def go(session: Any) -> Any:  # noqa: ANN401
        idx = parse_worker_selection(worker, len(session.slice.workers))
        return await op.tail(session, run, lines=lines, follow=follow, indices=idx,
                             on_line=lambda i, ln: printer(i, "stdout", ln))

    result = _run(ports, name, go)
    output.unreachable(result.unreachable)
    if follow:
        _report_end(result)
        raise typer.Exit(result.exit_code)
    if result.unreachable:
        raise typer.Exit(result.exit_code)


def _report_end(result: Any) -> None:  # noqa: ANN401
    if result.exit_code == 0:
        output.info(f"run {result.run_id}: every worker exited 0")
    elif result.first_failed is None:
        output.info(f"run {result.run_id}: every worker that could be read exited 0; "
                    + ", ".join(f"w{i}" for i in sorted(result.unreachable)) + " unreachable")
    else:
        codes = ", ".join(f"w{i}={'?' if c is None else c}"
                          for i, c in sorted(result.exit_codes.items()))
        output.info(f"run {result.run_id} failed: first failing worker w{result.first_failed} "
                    f"(exit {result.exit_code}); exit codes {codes}")


def status(
    name: NameArg, run: RunArg = None,
    watch: Annotated[bool, typer.Option("--watch", help="refresh until the run ends; exit "
                                        "with its code")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Node state plus, per worker, the run's state (running, exited, hung, unreachable)."""
    import asyncio

    from tpuctl.cli.status_view import StatusView
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import runs as op

    validate_node_name(name)
    ports = ports_for(api_endpoint, project, zone)
    # a PREEMPTED or TERMINATED node ends in opening the session: exit 6, named
    view = StatusView(as_json=json_, watch=watch)

    async def go(session: Any) -> Any:  # noqa: ANN401
        while True:
            st = await op.run_status(session, run)
            view.show(st)
            if not watch or st.finished or st.serve_state in ("degraded", "down"):
                return st
            await asyncio.sleep(interval)

    try:
        st = _run(ports, name, go, shared=True)
    finally:
        view.close()
    if watch and st.serve_state in ("degraded", "down"):
        output.info(f"serving {st.serve_state}: worker(s) "
                    + ", ".join(f"w{i}" for i in st.degraded_workers))
    output.unreachable({w.index: w.error or "unreachable" for w in st.workers
                        if w.state == "unreachable"})
    if st.exit_code:
        raise typer.Exit(st.exit_code)


def stop(
    name: NameArg, run: RunArg = None,
    grace: Annotated[float, typer.Option(help="seconds between TERM and KILL")] = 10.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """TERM then KILL the run's process group on every worker; clear the libtpu lockfile."""
    from tpuctl.ops import launch as op

    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: op.stop_run(s, run, grace=grace), shared=True)
    if json_:
        output.print_json(result.to_dict())
    else:
        for w in result.workers:
            code = "-" if w.exit_code is None else w.exit_code
            output.info(f"[w{w.index}] run {w.run_id}: {w.result} "
                        + (f"({w.error})" if w.error else f"(exit {code})"))
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def runs(
    name: NameArg, json_: JsonOpt = False, api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None, zone: ZoneOpt = None,
) -> None:
    """The node's runs, newest first: id, state, start time, exit code."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.runlist import list_runs

    validate_node_name(name)
    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, list_runs, shared=True)
    if json_:
        output.print_json(result.to_dict())
    elif not result.runs:
        output.info(f"no runs on {name}" + (" (among the workers that answered)"
                                            if result.unreachable else ""))
    else:
        output.table(["RUN", "STATE", "STARTED", "EXIT"],
                     [[r.run_id, r.state, r.started_at or "-",
                       "-" if r.exit_code is None else r.exit_code] for r in result.runs])
    if not json_:
        output.unreachable(result.unreachable)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
