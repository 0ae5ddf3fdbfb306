"""Entry point of the emulator: the REST API, the worker host, and their shared lifetime.

`serve` runs in the foreground until cancelled or signalled; `run_in_thread` runs the same on
a background thread for tests and in-process use.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from tpuctl.emulator.api import create_app
from tpuctl.emulator.auth import TOKEN_FILE, new_token, private_dir, write_private
from tpuctl.emulator.faults import Faults
from tpuctl.emulator.state import EmulatorState, WorkerHostLike

log = logging.getLogger(__name__)

INFO_FILE = "emulator.json"
HOST = "127.0.0.1"

WorkerHostFactory = Callable[[Path, int], WorkerHostLike]


def use_pidfd_child_watcher() -> None:
    """Call before asyncio.run in the main thread. Python 3.11's default child watcher starts a
    thread per child process (here: one per SSH command, measured as a fifth of the
    emulator's CPU in a 64-worker fan-out); pidfd watching, the default from 3.12 on Linux,
    starts none."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel supports it (Linux >= 5.3)
    except OSError:
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def _reserve_port(port: int) -> socket.socket:
    """Bind (not listen) 127.0.0.1:port and keep it: no other emulator can take this number,
    while workers still bind it on their own 127.x.y.z addresses."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def _reserve_ssh_port(requested: int, state_dir: Path) -> socket.socket:
    """The requested port, else the one a previous run used (workers keep their addresses),
    else any free one."""
    if requested:
        return _reserve_port(requested)
    previous = EmulatorState.saved_ssh_port(state_dir)
    if previous:
        with contextlib.suppress(OSError):
            return _reserve_port(previous)
    return _reserve_port(0)


API_PORT_FILE = "api-port"


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard one (every worker listens on a socket
    or two, and each SSH session holds a connection, pipes and a pidfd: a 1,024-worker
    fan-out needs thousands, where many systems start processes with 1,024). Returns the
    limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return soft


async def _start_site(runner: web.AppRunner, port: int, state_dir: Path) -> None:
    """Listen on the requested port; with none requested, on the port the previous run from
    this state dir used when it is free (an exported TPUCTL_API_ENDPOINT stays valid across
    `emulator stop` + `start`), else on any free port."""
    previous = 0
    if not port:
        with contextlib.suppress(OSError, ValueError):
            previous = int((state_dir / API_PORT_FILE).read_text())
    if 0 < previous < 65536:
        site = web.TCPSite(runner, HOST, previous)
        try:
            await site.start()
            return
        except OSError:  # taken meanwhile: any free port, as asked
            await site.stop()
    await web.TCPSite(runner, HOST, port).start()


def _save_api_port(state_dir: Path, port: int) -> None:
    with contextlib.suppress(OSError):
        (state_dir / API_PORT_FILE).write_text(f"{port}\n")


def _write_info(state_dir: Path, info: dict[str, Any]) -> None:
    write_private(state_dir / INFO_FILE, json.dumps(info, indent=1) + "\n")


def _remove_info(state_dir: Path) -> None:
    """Remove emulator.json and the token only if they still describe this process."""
    path = state_dir / INFO_FILE
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(path.read_text())
        if info.get("pid") == os.getpid():
            path.unlink()
            token = state_dir / TOKEN_FILE
            if token.read_text().strip() == info.get("token"):
                token.unlink()


def _default_worker_host(state_dir: Path, ssh_port: int) -> WorkerHostLike:
    from tpuctl.emulator.hosts import WorkerHost

    return WorkerHost(state_dir, ssh_port)


async def serve(
    port: int,
    state_dir: Path,
    *,
    ssh_port: int = 0,
    create_delay: float = 0.5,
    on_ready: Callable[[str], None] | None = None,
    worker_host: WorkerHostFactory | None = None,
    faults: dict[str, Any] | None = None,
    seed: int | None = None,
    token: str | None = None,
) -> None:
    """Serve the TPU v2 API on 127.0.0.1:port (0 = any free port) until cancelled or signalled.

    Every call needs `token` as a bearer token (a new random one when None), written 0600 to
    `state_dir/token` and into `state_dir/emulator.json`; the state dir is made 0700.

    `worker_host` replaces the real SSH worker host (tests use fakes for pure API checks).
    `faults` (see `tpuctl.emulator.faults`) are active from the start, their random streams
    seeded with `seed` (a random one when None; `GET /emulator/v1/faults` shows it).
    """
    fault_state = Faults(faults, seed)  # validates before anything binds
    fd_limit = raise_fd_limit()
    state_dir = private_dir(Path(state_dir).resolve())
    token = token or new_token()
    ssh_sock = _reserve_ssh_port(ssh_port, state_dir)
    runner: web.AppRunner | None = None
    state: EmulatorState | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        ssh_port = ssh_sock.getsockname()[1]
        host = (worker_host or _default_worker_host)(state_dir, ssh_port)
        if hasattr(host, "faults"):
            host.faults = fault_state
        state = EmulatorState(
            state_dir, host, create_delay=create_delay, ssh_port=ssh_port, faults=fault_state
        )
        if hasattr(host, "world"):
            host.world = state.fabric
        state.load()
        await state.resume()

        info: dict[str, Any] = {"pid": os.getpid(), "ssh_port": ssh_port}
        app = create_app(state, info, token=token)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await _start_site(runner, port, state_dir)
        _check_loopback(runner)
        bound = _bound_port(runner)
        _save_api_port(state_dir, bound)
        endpoint = f"http://{HOST}:{bound}"
        state.fabric.metadata = (f"{HOST}:{bound}", token)  # workers' metadata servers
        info["endpoint"] = endpoint
        info["state_dir"] = str(state_dir)
        write_private(state_dir / TOKEN_FILE, token + "\n")
        _write_info(state_dir, {**info, "token": token, "token_file": str(state_dir / TOKEN_FILE)})

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop.set)
                    installed.append(sig)
        log.info("tpuctl emulator listening on %s (ssh port %d, %d open files allowed)",
                 endpoint, ssh_port, fd_limit)
        if on_ready is not None:
            on_ready(endpoint)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        # shielded so a second Ctrl-C cannot leave worker processes behind
        await asyncio.shield(_shutdown(runner, state, state_dir))
        ssh_sock.close()


async def _shutdown(
    runner: web.AppRunner | None, state: EmulatorState | None, state_dir: Path
) -> None:
    if runner is not None:
        await runner.cleanup()
    if state is not None:
        await state.close()
    _remove_info(state_dir)


def _check_loopback(runner: web.AppRunner) -> None:
    """The emulator runs anything it is asked to: it must never listen beyond loopback."""
    for addr in runner.addresses:
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        if not ipaddress.ip_address(host).is_loopback:
            raise RuntimeError(f"the emulator must listen on loopback only, not {host}")


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("the emulator's HTTP server is not listening")


@contextlib.contextmanager
def run_in_thread(state_dir: Path, **kw: Any) -> Iterator[str]:
    """Run `serve` on a background thread's loop; yield its endpoint; shut down on exit.

    Keyword arguments go to `serve` (`port` defaults to 0).
    """
    port = int(kw.pop("port", 0))
    ready = threading.Event()
    endpoint: list[str] = []
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()
    task_box: list[asyncio.Task[None]] = []

    def on_ready(ep: str) -> None:
        endpoint.append(ep)
        ready.set()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        task_box.append(task)
        await serve(port, Path(state_dir), on_ready=on_ready, **kw)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)
        finally:
            ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="tpuctl-emulator", daemon=True)
    thread.start()
    ready.wait()
    try:
        if errors:
            raise errors[0]
        yield endpoint[0]
    finally:
        if thread.is_alive() and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in task_box])
        thread.join(timeout=30)
