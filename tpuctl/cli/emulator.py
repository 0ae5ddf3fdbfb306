"""`tpuctl emulator serve|start|stop|status`: the local TPU v2 API with SSH-reachable workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.options import JsonOpt
from tpuctl.errors import NotFoundError, TimeoutExpired, TpuctlError
from tpuctl.paths import emulator_dir

app = typer.Typer(help="Run the local TPU emulator (REST API + SSH workers).",
                  no_args_is_help=True)

StateDirOpt = Annotated[Path | None, typer.Option("--state-dir",
                                                  help="where nodes and worker homes live "
                                                  "(default ~/.tpuctl/emulator)",
                                                  show_default=False)]
PortOpt = Annotated[int, typer.Option(help="REST port on 127.0.0.1 (0: pick a free one)")]
SshPortOpt = Annotated[int, typer.Option("--ssh-port",
                                         help="SSH port shared by all workers (0: free one)")]
DelayOpt = Annotated[float, typer.Option("--create-delay",
                                         help="seconds a node stays CREATING")]


def _info_file(state_dir: Path) -> Path:
    return state_dir / "emulator.json"


def _read_info(state_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(_info_file(state_dir).read_text())
        os.kill(int(info["pid"]), 0)
        return dict(info)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@app.command()
def serve(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
) -> None:
    """Run the emulator in the foreground until interrupted."""
    import asyncio

    from tpuctl.emulator.server import serve as run_server

    sd = (state_dir or emulator_dir()).resolve()
    sd.mkdir(parents=True, exist_ok=True)

    def ready(endpoint: str) -> None:
        output.out(f"tpuctl emulator listening on {endpoint} (state in {sd})")
        output.out(f"export TPUCTL_API_ENDPOINT={endpoint}")

    try:
        asyncio.run(run_server(port, sd, ssh_port=ssh_port, create_delay=create_delay,
                               on_ready=ready))
    except KeyboardInterrupt:
        pass


@app.command()
def start(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to listen")] = 30.0,
    json_: JsonOpt = False,
) -> None:
    """Start the emulator in the background (idempotent) and print its endpoint."""
    sd = (state_dir or emulator_dir()).resolve()
    sd.mkdir(parents=True, exist_ok=True)
    info = _read_info(sd)
    if info is None:
        _info_file(sd).unlink(missing_ok=True)
        log = open(sd / "emulator.log", "ab")  # noqa: SIM115 - handed to the child
        argv = [sys.executable, "-m", "tpuctl", "emulator", "serve", "--state-dir", str(sd),
                "--port", str(port), "--ssh-port", str(ssh_port),
                "--create-delay", str(create_delay)]
        # cwd: the state dir, so `python -m tpuctl` never imports a stray ./tpuctl
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True, cwd=sd)
        log.close()
        deadline = time.monotonic() + timeout
        while (info := _read_info(sd)) is None:
            if proc.poll() is not None:
                tail = (sd / "emulator.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise TpuctlError(f"the emulator exited with code {proc.returncode}: "
                                  + " | ".join(tail), hint=f"see {sd / 'emulator.log'}")
            if time.monotonic() > deadline:
                proc.terminate()
                raise TimeoutExpired(f"the emulator did not start within {timeout:.0f}s",
                                     hint=f"see {sd / 'emulator.log'}")
            time.sleep(0.1)
    if json_:
        output.print_json(info)
        return
    output.info(f"emulator running (pid {info['pid']}), state in {sd}")
    output.out(f"export TPUCTL_API_ENDPOINT={info['endpoint']}")


@app.command()
def stop(
    state_dir: StateDirOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to exit")] = 30.0,
) -> None:
    """Stop the background emulator; its workers' processes end with it."""
    sd = (state_dir or emulator_dir()).resolve()
    info = _read_info(sd)
    if info is None:
        output.info("emulator not running")
        return
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _info_file(sd).unlink(missing_ok=True)
    output.info(f"emulator stopped (pid {pid})")


@app.command()
def status(state_dir: StateDirOpt = None, json_: JsonOpt = False) -> None:
    """Is the background emulator running, and where."""
    sd = (state_dir or emulator_dir()).resolve()
    info = _read_info(sd)
    if json_:
        output.print_json({"running": info is not None, **(info or {}), "state_dir": str(sd)})
        if info is None:
            raise typer.Exit(3)
        return
    if info is None:
        raise NotFoundError("emulator not running", hint="start it with `tpuctl emulator start`")
    output.out(f"running: pid {info['pid']}, endpoint {info['endpoint']}, state in {sd}")
