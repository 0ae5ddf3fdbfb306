"""`tpuctl mux status|stop`: the per-user daemon that keeps worker connections open."""

from __future__ import annotations

import typer

from tpuctl.cli import output
from tpuctl.cli.options import JsonOpt

app = typer.Typer(help="The connection daemon that keeps worker SSH connections open between "
                  "commands (persist_connections).", no_args_is_help=True)


@app.command("status")
def status(json_: JsonOpt = False) -> None:
    """Whether a daemon runs, how many nodes and connections it holds, and for how long."""
    from tpuctl.config import persist_seconds
    from tpuctl.workers.mux import daemon_request, socket_path

    reply = daemon_request("status")
    info = (reply or {}).get("status")
    persist = persist_seconds()
    if json_:
        output.print_json({"running": info is not None, "socket": str(socket_path()),
                           "persist_connections_s": persist, **(info or {})})
        return
    if info is None:
        state = "on" if persist > 0 else "off (persist_connections is 0)"
        output.out(f"no connection daemon running; persistence {state}")
        return
    output.out(f"daemon pid {info['pid']}: {info['nodes']} node(s), {info['connections']} "
               f"open connection(s), {info['busy']} command(s) running, idle "
               f"{info['idle_s']}s, exits after {info['persist_s']:g}s idle")


@app.command("stop")
def stop() -> None:
    """Close every kept connection and stop the daemon (commands then connect anew); daemons
    of an earlier tpuctl version are stopped too."""
    from tpuctl.workers.mux import daemon_request, stop_all

    n = (1 if daemon_request("stop") else 0) + stop_all()
    output.info("connection daemon stopped" if n else "no connection daemon running")
