"""How `status` shows a run: a table (plain when piped), JSON, or with `--watch` on a
terminal one table redrawn in place (rich Live) instead of a new one every interval."""

from __future__ import annotations

from typing import Any

from tpuctl.cli import output

HEADERS = ["WORKER", "STATE", "EXIT", "HEARTBEAT", "PID", "LOG LINES"]


def header_lines(st: Any) -> list[str]:  # noqa: ANN401 - an ops.runs.RunStatus
    lines = [f"node {st.node} {st.node_state}; run {st.run_id}: {st.state}"]
    if st.serve_url is not None:
        bad = ", ".join(f"w{i}" for i in st.degraded_workers)
        if st.first_down is not None and len(st.degraded_workers) > 1:
            bad += f", first down: w{st.first_down}"
        lines.append(f"serving: {st.serve_state} (health {st.health_code or '-'}"
                     f"{'; not serving: ' + bad if bad else ''}) at {st.serve_url}")
    return lines


def rows(st: Any) -> list[list[object]]:  # noqa: ANN401
    return [[f"w{w.index}", w.state, "-" if w.exit_code is None else w.exit_code,
             "-" if w.heartbeat_age is None else f"{w.heartbeat_age}s ago",
             w.pid or "-", w.log_lines] for w in st.workers]


class StatusView:
    """Shows each refresh of a run's status; `close()` leaves the last one on screen."""

    def __init__(self, *, as_json: bool, watch: bool) -> None:
        self.as_json = as_json
        self._live: Any = None
        if watch and not as_json and output.stdout_is_tty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(), auto_refresh=False)
            self._live.start()

    def show(self, st: Any) -> None:  # noqa: ANN401
        if self.as_json:
            output.print_json(st.to_dict())
        elif self._live is not None:
            self._live.update(_renderable(st), refresh=True)
        else:
            for line in header_lines(st):
                output.out(line)
            output.table(HEADERS, rows(st))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _renderable(st: Any) -> Any:  # noqa: ANN401
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(*HEADERS, show_edge=False, header_style="bold")
    for row in rows(st):
        t.add_row(*(str(c) for c in row))
    return Group(*(Text(line) for line in header_lines(st)), t)
