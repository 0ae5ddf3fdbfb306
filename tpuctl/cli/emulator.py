"""`tpuctl emulator serve|start|stop|status|faults|preempt`: the local TPU v2 API with
SSH-reachable workers, and the faults it injects on purpose."""

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
from tpuctl.cli.options import JsonOpt, not_an_option
from tpuctl.config import EMULATOR_PROJECT, EMULATOR_ZONE
from tpuctl.errors import (
    CloudError,
    NotFoundError,
    TimeoutExpired,
    TpuctlError,
    UsageError,
)
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
FaultOpt = Annotated[list[str] | None, typer.Option(
    "--fault", metavar="KEY=VALUE", show_default=False,
    help="inject a fault (repeatable): api-error-rate=0.2, stockout-zones=Z1,Z2, "
    "stockout-mode=operation|request, create-delay=S, ssh-refuse-rate=R, ssh-drop-rate=R, "
    "ssh-drop-after=S, unreachable-workers=NODE:I[,NODE:I]; see docs/emulator.md")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", show_default=False,
    help="seed of the faults' random decisions (same seed + same requests = same faults)")]
AdminEndpointOpt = Annotated[str | None, typer.Option(
    "--api-endpoint", show_default=False, callback=not_an_option,
    help="the emulator's endpoint; default: the one running from --state-dir, else "
    "TPUCTL_API_ENDPOINT, else the one running from ~/.tpuctl/emulator")]


def _state_dir(state_dir: Path | None) -> Path:
    """The state dir, made 0700 (it holds the token, worker homes and secrets)."""
    from tpuctl.paths import private_dir

    sd = (state_dir or emulator_dir()).resolve()
    try:
        return private_dir(sd)
    except PermissionError as e:
        raise UsageError(str(e), hint="pass a --state-dir of your own") from None


def _info_file(state_dir: Path) -> Path:
    return state_dir / "emulator.json"


def _read_info(state_dir: Path) -> dict[str, Any] | None:
    from tpuctl.config import emulator_info

    return emulator_info(state_dir)


def _parse_faults(items: list[str] | None) -> dict[str, Any]:
    """Validate `--fault KEY=VALUE` options before anything starts (bad ones exit 2)."""
    from tpuctl.emulator.faults import FaultError, parse_assignments

    try:
        return parse_assignments(items or [])
    except FaultError as e:
        raise UsageError(str(e), hint="see `tpuctl emulator serve --help` and "
                         "docs/emulator.md#fault-injection") from None


def _public(info: dict[str, Any]) -> dict[str, Any]:
    """emulator.json without the token (it is printed nowhere)."""
    return {k: v for k, v in info.items() if k != "token"}


def _exports(info: dict[str, Any]) -> None:
    """What `eval "$(tpuctl emulator start)"` runs: the endpoint and where its token is (a
    path, never the token: it stays in the 0600 file)."""
    output.out(f"export TPUCTL_API_ENDPOINT={info['endpoint']}")
    if info.get("token_file"):
        import shlex

        output.out(f"export TPUCTL_API_TOKEN_FILE={shlex.quote(str(info['token_file']))}")


def _endpoint(api_endpoint: str | None, state_dir: Path | None) -> tuple[str, str | None]:
    """(endpoint, its token): --api-endpoint, else --state-dir's emulator, else
    TPUCTL_API_ENDPOINT, else the default state dir's emulator."""
    from tpuctl.config import api_token

    if api_endpoint:
        return api_endpoint.rstrip("/"), api_token(api_endpoint)[0]
    if state_dir is None and os.environ.get("TPUCTL_API_ENDPOINT"):
        endpoint = os.environ["TPUCTL_API_ENDPOINT"].rstrip("/")
        return endpoint, api_token(endpoint)[0]
    sd = (state_dir or emulator_dir()).resolve()
    info = _read_info(sd)
    if info is None:
        raise NotFoundError(f"no emulator running from {sd}",
                            hint="start it with `tpuctl emulator start`, or pass --api-endpoint")
    return str(info["endpoint"]).rstrip("/"), info.get("token")


def _admin(target: tuple[str, str | None], method: str, path: str,
           body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
    """One admin call to a running emulator; its error envelope becomes a typed error."""
    import urllib.error  # here, not at the top: urllib.request costs ~15 ms of --help
    import urllib.parse
    import urllib.request

    endpoint, token = target
    url = f"{endpoint}/emulator/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http(s) endpoint
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {e.code}"
        if e.code == 404:
            raise NotFoundError(message, hint="check the node name, --project and --zone "
                                "(`tpuctl list`), and that the endpoint is the emulator's"
                                ) from None
        if e.code == 400:
            raise UsageError(message) from None
        if e.code == 401:
            raise CloudError(f"the emulator at {endpoint} refused the call: {message}",
                             hint="admin calls need its token: run them as the user who "
                             "started it, with --state-dir or TPUCTL_API_TOKEN_FILE") from None
        raise CloudError(f"emulator admin call failed: {message}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CloudError(f"cannot reach the emulator at {endpoint} ({e})",
                         hint="is it running? `tpuctl emulator status`") from None


@app.command()
def serve(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
    fault: FaultOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Run the emulator in the foreground until interrupted."""
    import asyncio

    from tpuctl.emulator.server import serve as run_server
    from tpuctl.emulator.server import use_pidfd_child_watcher

    fault_values = _parse_faults(fault)
    sd = _state_dir(state_dir)

    def ready(endpoint: str) -> None:
        output.out(f"tpuctl emulator listening on {endpoint} (state in {sd})")
        _exports({"endpoint": endpoint, "token_file": sd / "token"})

    use_pidfd_child_watcher()
    try:
        asyncio.run(run_server(port, sd, ssh_port=ssh_port, create_delay=create_delay,
                               on_ready=ready, faults=fault_values, seed=seed))
    except KeyboardInterrupt:
        pass


@app.command()
def start(
    state_dir: StateDirOpt = None,
    port: PortOpt = 0,
    ssh_port: SshPortOpt = 0,
    create_delay: DelayOpt = 1.0,
    fault: FaultOpt = None,
    seed: SeedOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for it to listen")] = 30.0,
    json_: JsonOpt = False,
) -> None:
    """Start the emulator in the background (idempotent) and print its endpoint.

    If it is already running, `--fault`/`--seed` are applied to it at run time."""
    fault_values = _parse_faults(fault)
    sd = _state_dir(state_dir)
    info = _read_info(sd)
    if info is not None and (fault_values or seed is not None):
        body: dict[str, Any] = dict(fault_values)
        if seed is not None:
            body["seed"] = seed
        _admin((str(info["endpoint"]).rstrip("/"), info.get("token")), "POST", "faults", body)
        output.info("emulator already running: faults applied to it")
    if info is None:
        _info_file(sd).unlink(missing_ok=True)
        log = os.fdopen(os.open(sd / "emulator.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                0o600), "ab")  # handed to the child
        argv = [sys.executable, "-m", "tpuctl", "emulator", "serve", "--state-dir", str(sd),
                "--port", str(port), "--ssh-port", str(ssh_port),
                "--create-delay", str(create_delay)]
        for item in fault or []:
            argv += ["--fault", item]
        if seed is not None:
            argv += ["--seed", str(seed)]
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
        output.print_json(_public(info))
        return
    output.info(f"emulator running (pid {info['pid']}), state in {sd}")
    _exports(info)


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
    (sd / "token").unlink(missing_ok=True)  # a stopped emulator's token opens nothing: gone
    output.info(f"emulator stopped (pid {pid})")


@app.command()
def status(state_dir: StateDirOpt = None, json_: JsonOpt = False) -> None:
    """Is the background emulator running, and where."""
    sd = (state_dir or emulator_dir()).resolve()
    info = _read_info(sd)
    if json_:
        output.print_json({"running": info is not None, **_public(info or {}),
                           "state_dir": str(sd)})
        if info is None:
            raise typer.Exit(3)
        return
    if info is None:
        raise NotFoundError("emulator not running", hint="start it with `tpuctl emulator start`")
    output.out(f"running: pid {info['pid']}, endpoint {info['endpoint']}, state in {sd}")


@app.command()
def faults(
    assignments: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", show_default=False,
        help="faults to set (merged into the active ones); none: just show them")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="clear every fault first")] = False,
    seed: SeedOpt = None,
    api_endpoint: AdminEndpointOpt = None,
    state_dir: StateDirOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Show, set or clear the running emulator's faults (see docs/emulator.md)."""
    values = _parse_faults(assignments)
    endpoint = _endpoint(api_endpoint, state_dir)
    if clear:
        result = _admin(endpoint, "DELETE", "faults")
    if values or seed is not None:
        body: dict[str, Any] = dict(values)
        if seed is not None:
            body["seed"] = seed
        result = _admin(endpoint, "POST", "faults", body)
    elif not clear:
        result = _admin(endpoint, "GET", "faults")
    if json_:
        output.print_json(result)
        return
    active = result.get("faults") or {}
    output.out(f"seed {result.get('seed')}")
    if not active:
        output.out("no faults")
    for key, value in active.items():
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else value
        output.out(f"{key}={shown}")


@app.command()
def preempt(
    node: Annotated[str, typer.Argument(help="node (task) name", show_default=False)],
    after: Annotated[float | None, typer.Option(
        "--after", min=0, show_default=False,
        help="preempt this many seconds from now (a timer in the emulator); default now")
    ] = None,
    project: Annotated[str, typer.Option("--project", envvar="TPUCTL_PROJECT",
                                         help="the node's project (env TPUCTL_PROJECT)",
                                         callback=not_an_option)] = EMULATOR_PROJECT,
    zone: Annotated[str, typer.Option("--zone", envvar="TPUCTL_ZONE",
                                      help="the node's zone (env TPUCTL_ZONE)",
                                      callback=not_an_option)] = EMULATOR_ZONE,
    api_endpoint: AdminEndpointOpt = None,
    state_dir: StateDirOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Preempt an emulated node as GCP preempts a spot VM: PREEMPTED, its processes killed."""
    endpoint = _endpoint(api_endpoint, state_dir)
    name = f"projects/{project}/locations/{zone}/nodes/{node}"
    query = {"after": repr(after)} if after is not None else None
    result = _admin(endpoint, "POST", f"{name}:preempt", {}, query)
    if json_:
        output.print_json(result)
        return
    if after is not None:
        output.info(f"node {node} will be preempted in {after:g}s")
    else:
        output.info(f"node {node} preempted")
