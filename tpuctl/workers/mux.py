"""The Workers port through tpuctl's per-user connection daemon (like OpenSSH ControlPersist).

A CLI process starts from nothing: every `tpuctl exec` from a shell would otherwise pay the
interpreter, the asyncssh import and a key exchange per worker before its command runs. With
persistence on (`persist_connections`, docs/commands.md), short commands hand their fan-out to
`tpuctl.workers.muxd`, a background process of this user's that keeps each node's worker
connections open for a while, over a unix socket in ~/.tpuctl/mux (directory 0700, socket
0600, peer uid checked). This client imports no asyncssh.

Trust is unchanged: the client still resolves the worker list (cache or API) and sends the
pinned host keys with every request; the daemon connects with exactly those and tpuctl's own
key file, as SshWorkers does in process. When no daemon answers, the command runs in process
as before and starts one for the next command. A daemon that dies before it acknowledges a
request costs nothing (the command runs in process); after, the workers it had not reported
get an error (the command may have started there), never a silent re-run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tpuctl.paths import private_dir
from tpuctl.workers import muxproto
from tpuctl.workers.base import Listener, OnOutput, SshTarget, WorkerResult, Workers
from tpuctl.workers.muxproto import (  # re-exported: the daemon and tests use them from here
    ACK,
    ACK_TIMEOUT_S,
    FRAME_LIMIT,
    PROTOCOL,
    STALE_REQUEST_S,
    code_id,
    encode,
    error_from_dict,
    error_to_dict,
    result_from_dict,
    target_from_dict,
    target_to_dict,
)

__all__ = ["ACK", "ACK_TIMEOUT_S", "FRAME_LIMIT", "PROTOCOL", "STALE_REQUEST_S", "MuxWorkers",
           "code_id", "encode", "error_from_dict", "error_to_dict", "result_from_dict",
           "target_from_dict", "target_to_dict"]


def mux_dir() -> Path:
    return Path(muxproto.mux_dir())


def socket_path() -> Path:
    return Path(muxproto.socket_path())


def usable_socket_path() -> Path | None:
    path = muxproto.usable_socket_path()
    return None if path is None else Path(path)


class _NoDaemon(Exception):
    """No daemon acknowledged the request: nothing ran, the caller runs it in process."""


# What the daemon inherits from the command that starts it: enough to find Python, tpuctl and
# the user's files; not the rest of the shell's environment (tokens exported there, say).
_DAEMON_ENV = ("HOME", "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIRTUAL_ENV",
               "PYTHONPATH", "PYTHONHOME", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")


def start_daemon(persist: float) -> None:
    """Start the daemon in its own session, detached from this terminal and its signals. A
    second daemon racing for the same socket exits at once (it holds a lock file)."""
    private_dir(mux_dir())
    env = {k: os.environ[k] for k in _DAEMON_ENV if k in os.environ}
    with contextlib.suppress(OSError):
        subprocess.Popen(  # our own interpreter and module, no shell
            [sys.executable, "-m", "tpuctl.workers.muxd", "--persist", f"{persist:g}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/", env=env)


def daemon_request(op: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """A control request (`status`, `stop`) to this user's daemon; None when none answers."""
    import socket

    path = usable_socket_path()
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(encode({"v": PROTOCOL, "op": op}))
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        reply = json.loads(data)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def stop_all() -> int:
    """SIGTERM every daemon of this user's, this version's or an older one's (each writes
    <code>.pid beside its socket); returns how many were signalled."""
    import signal

    stopped = 0
    for pid_file in mux_dir().glob("*.pid"):
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone, or no /proc here: its idle timer ends it
        if b"tpuctl.workers.muxd" in cmdline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
                stopped += 1
    return stopped


class MuxWorkers:
    """Implements `Workers` by asking the daemon; runs in process when there is none."""

    def __init__(self, targets: Sequence[SshTarget], *, key_path: Path, pool: str,
                 persist: float, connect_timeout: float, connect_attempts: int,
                 max_concurrency: int = 64) -> None:
        self._targets = list(targets)
        self._key_path = Path(key_path)
        self._pool = pool
        self._persist = persist
        self._connect_timeout = connect_timeout
        self._connect_attempts = connect_attempts
        self._max_concurrency = max_concurrency
        self._local: Workers | None = None
        self.via_daemon = 0  # requests the daemon answered (observable in tests)

    def _in_process(self) -> Workers:
        if self._local is None:
            from tpuctl.workers.ssh import SshWorkers

            self._local = SshWorkers(self._targets, key_path=self._key_path,
                                     connect_timeout=self._connect_timeout,
                                     connect_attempts=self._connect_attempts,
                                     max_concurrency=self._max_concurrency)
        return self._local

    async def run(self, command: str, *, indices: Sequence[int] | None = None,
                  timeout: float | None = None, stdin: bytes | None = None,
                  on_output: OnOutput | None = None, capture: bool = False
                  ) -> list[WorkerResult]:
        if self._local is None:
            try:
                results = await self._via_daemon(command, indices, timeout, stdin, on_output,
                                                 capture)
                self.via_daemon += 1
                return results
            except _NoDaemon:
                if usable_socket_path() is not None:
                    start_daemon(self._persist)  # for the next command
        return await self._in_process().run(command, indices=indices, timeout=timeout,
                                            stdin=stdin, on_output=on_output, capture=capture)

    def request(self, command: str | Mapping[int, str], *, indices: Sequence[int] | None,
                timeout: float | None, stdin: bytes | None, stream: bool, capture: bool
                ) -> dict[str, Any]:
        """One fan-out as the daemon receives it (muxd.Daemon._serve_one reads it)."""
        return muxproto.run_request(
            pool=self._pool, key_path=str(self._key_path),
            targets=[target_to_dict(t) for t in self._targets],
            connect_timeout=self._connect_timeout, connect_attempts=self._connect_attempts,
            max_concurrency=self._max_concurrency, persist=self._persist, command=command,
            indices=indices, timeout=timeout,
            stdin_b64=None if stdin is None else base64.b64encode(stdin).decode(),
            stream=stream, capture=capture)

    async def _via_daemon(self, command: str, indices: Sequence[int] | None,
                          timeout: float | None, stdin: bytes | None,
                          on_output: OnOutput | None, capture: bool) -> list[WorkerResult]:
        path = usable_socket_path()
        if path is None:
            raise _NoDaemon
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=FRAME_LIMIT)
        except OSError:
            raise _NoDaemon from None
        request = self.request(command, indices=indices, timeout=timeout, stdin=stdin,
                               stream=on_output is not None, capture=capture)
        try:
            try:
                writer.write(encode(request))
                await writer.drain()
                first = await asyncio.wait_for(reader.readline(), ACK_TIMEOUT_S)
            except TimeoutError:  # (before OSError: asyncio's TimeoutError is one)
                sys.stderr.write(muxproto.NO_ACK + "\n")
                raise _NoDaemon from None
            except OSError:
                raise _NoDaemon from None
            if first != ACK:
                raise _NoDaemon  # not a daemon of ours, or it refused: nothing ran
            try:
                async for frame in _frames(reader):
                    if "o" in frame and on_output is not None:
                        index, stream, line = frame["o"]
                        on_output(int(index), str(stream), str(line))
                    elif "results" in frame:
                        return [result_from_dict(r) for r in frame["results"]]
                    elif "error" in frame:
                        raise error_from_dict(frame["error"])
            except asyncio.CancelledError:
                # Ctrl-C: closing our end makes the daemon cancel the fan-out (closing every
                # worker's channel, as in process); wait briefly until it says it has.
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(_drain_until(reader, "cancelled"),
                                           muxproto.CANCEL_CONFIRM_S)
                raise
            except (OSError, ValueError):
                pass  # a daemon that died or spoke garbage: handled below
        finally:
            writer.close()
        chosen = [t.index for t in self._targets] if indices is None else list(indices)
        return muxproto.lost_results(chosen)

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        """A tunnel lives as long as this process: never through the daemon."""
        return await self._in_process().forward_local(index, local_port, dest_host, dest_port)

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        self._targets = list(targets)
        self._connect_timeout = connect_timeout
        self._connect_attempts = connect_attempts
        if self._local is not None:
            self._local.retarget(targets, connect_timeout=connect_timeout,
                                 connect_attempts=connect_attempts)

    async def close(self) -> None:
        """The daemon's connections stay open for the next command; in-process ones close."""
        if self._local is not None:
            await self._local.close()


async def _frames(reader: asyncio.StreamReader) -> Any:  # async iterator
    while True:
        line = await reader.readline()
        if not line:
            return
        frame = json.loads(line)
        if not isinstance(frame, dict):
            raise ValueError("bad frame")
        yield frame


async def _drain_until(reader: asyncio.StreamReader, key: str) -> None:
    async for frame in _frames(reader):
        if key in frame:
            return
