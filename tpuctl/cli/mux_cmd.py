"""`tpuctl mux status|stop`: the per-user daemon that keeps worker connections open.

These commands are about the connection daemon itself (tpuctl/workers/mux.py), as
`tpuctl emulator` is about the emulator: they talk to it directly."""

from __future__ import annotations

import typer

from tpuctl.cli.options import JsonOpt

app = typer.Typer(help="The connection daemon that keeps worker SSH connections open between "
                  "commands (persist_connections).", no_args_is_help=True)


@app.command("status")
def status(json_: JsonOpt = False) -> int:
    """Whether a daemon runs, how many nodes and connections it holds, and for how long."""
    from tpuctl.cli.render.misc import MuxStatusView
    from tpuctl.config import persist_seconds
    from tpuctl.workers.mux import daemon_request, socket_path

    info = (daemon_request("status") or {}).get("status")
    st = {"running": info is not None, "socket": str(socket_path()),
          "persist_connections_s": persist_seconds(), **(info or {})}
    return MuxStatusView(json=json_).done(st)


@app.command("stop")
def stop() -> int:
    """Close every kept connection and stop the daemon (commands then connect anew); daemons
    of an earlier tpuctl version are stopped too."""
    from tpuctl.cli.render.misc import mux_stopped
    from tpuctl.workers.mux import daemon_request, stop_all

    mux_stopped((1 if daemon_request("stop") else 0) + stop_all())
    return 0
