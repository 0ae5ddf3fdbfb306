"""emulator serve, start, stop, status, faults, preempt."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tpuctl.cli import output
from tpuctl.cli.render.base import View
from tpuctl.emulator import control
from tpuctl.errors import ExitCode, NotFoundError


def exports(info: dict[str, Any]) -> None:
    """What `eval "$(tpuctl emulator start)"` runs: the endpoint and where its token is (a
    path, never the token: it stays in the 0600 file)."""
    output.out(f"export TPUCTL_API_ENDPOINT={info['endpoint']}")
    if info.get("token_file"):
        output.out(f"export TPUCTL_API_TOKEN_FILE={shlex.quote(str(info['token_file']))}")


def listening(endpoint: str, state_dir: Path) -> None:
    output.out(f"tpuctl emulator listening on {endpoint} (state in {state_dir})")
    exports({"endpoint": endpoint, "token_file": state_dir / "token"})


class StartView(View[control.Started]):
    def done(self, started: control.Started) -> int:
        if started.faults_applied:
            output.info("emulator already running: faults applied to it")
        return super().done(started)

    def document(self, started: control.Started) -> dict[str, Any]:
        return control.public_info(started.info)

    def text(self, started: control.Started) -> None:
        output.info(f"emulator running (pid {started.info['pid']}), state in "
                    f"{started.state_dir}")
        exports(started.info)


class StopView(View[control.Stopped]):
    def text(self, stopped: control.Stopped) -> None:
        output.info("emulator not running" if stopped.pid is None
                    else f"emulator stopped (pid {stopped.pid})")


class StatusView(View[control.Status]):
    def text(self, st: control.Status) -> None:
        if st.info is None:
            output.render_error(NotFoundError("emulator not running",
                                              hint="start it with `tpuctl emulator start`"))
            return
        output.out(f"running: pid {st.info['pid']}, endpoint {st.info['endpoint']}, "
                   f"state in {st.state_dir}")

    def exit_code(self, st: control.Status) -> int:
        return 0 if st.running else int(ExitCode.NOT_FOUND)


class FaultsView(View[control.FaultState]):
    def text(self, result: control.FaultState) -> None:
        output.out(f"seed {result.seed}")
        if not result.faults:
            output.out("no faults")
        for key, value in result.faults.items():
            shown = ",".join(str(v) for v in value) if isinstance(value, list) else value
            output.out(f"{key}={shown}")


class PreemptView(View[control.Preempted]):
    def text(self, result: control.Preempted) -> None:
        output.info(f"node {result.node} will be preempted in {result.after:g}s"
                    if result.after is not None else f"node {result.node} preempted")
