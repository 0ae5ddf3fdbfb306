"""config, mux status|stop."""

from __future__ import annotations

from typing import Any

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.ops.settings import ConfigReport


class ConfigView(View[ConfigReport]):
    def text(self, report: ConfigReport) -> None:
        output.table(["SETTING", "VALUE", "SOURCE"],
                     [[k, v["value"] or "-", v["source"]] for k, v in report.settings.items()])


class MuxStatusView(View[dict[str, Any]]):
    """The daemon's status reply ({"running": False, ...} without one)."""

    def document(self, st: dict[str, Any]) -> dict[str, Any]:
        return st

    def text(self, st: dict[str, Any]) -> None:
        if not st["running"]:
            state = ("on" if st["persist_connections_s"] > 0
                     else "off (persist_connections is 0)")
            output.out(f"no connection daemon running; persistence {state}")
            return
        output.out(f"daemon pid {st['pid']}: {st['nodes']} node(s), {st['connections']} "
                   f"open connection(s), {st['busy']} command(s) running, idle "
                   f"{st['idle_s']}s, exits after {st['persist_s']:g}s idle")


def mux_stopped(n: int) -> None:
    output.info("connection daemon stopped" if n else "no connection daemon running")
