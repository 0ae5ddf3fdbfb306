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
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tpuctl import errors
from tpuctl.paths import private_dir, tpuctl_home
from tpuctl.workers.base import Listener, OnOutput, SshTarget, WorkerResult, Workers

PROTOCOL = 1
# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS); a longer HOME runs in process.
_MAX_SOCKET_PATH = 100
# One request line may carry a script bundle or a .env on stdin.
FRAME_LIMIT = 64 * 1024 * 1024
# After Ctrl-C, how long the client waits for the daemon to confirm it closed the channels.
_CANCEL_CONFIRM_S = 3.0
# A daemon that does not acknowledge within ACK_TIMEOUT_S (stopped, wedged) is bypassed: the
# command runs in process. The daemon never starts a request older than STALE_REQUEST_S, so
# a late daemon cannot run a command the client has given up on (same host, same clock).
ACK_TIMEOUT_S = 5.0
STALE_REQUEST_S = 4.0
# the daemon's code: SshWorkers and what it is made of
_DAEMON_FILES = ("mux.py", "muxd.py", "ssh.py", "sshfailures.py", "lines.py", "openssh.py",
                 "base.py")


def mux_dir() -> Path:
    return tpuctl_home() / "mux"


def code_id() -> str:
    """Identifies the daemon code: a client never talks to a daemon from another tpuctl
    version (an upgraded or edited install starts its own; the old one idles out)."""
    h = hashlib.sha256(str(PROTOCOL).encode())
    here = Path(__file__).parent
    for name in _DAEMON_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def socket_path() -> Path:
    return mux_dir() / f"{code_id()}.sock"


def usable_socket_path() -> Path | None:
    path = socket_path()
    return path if len(os.fsencode(path)) <= _MAX_SOCKET_PATH else None


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# The daemon's first frame for a request it will run; anything else means nothing ran.
ACK = encode({"ack": 1})


def target_to_dict(t: SshTarget) -> dict[str, Any]:
    return asdict(t)


def target_from_dict(d: dict[str, Any]) -> SshTarget:
    return SshTarget(index=int(d["index"]), host=str(d["host"]), port=int(d["port"]),
                     username=str(d["username"]),
                     host_key=None if d.get("host_key") is None else str(d["host_key"]))


def result_from_dict(d: dict[str, Any]) -> WorkerResult:
    return WorkerResult(index=int(d["index"]),
                        exit_code=None if d.get("exit_code") is None else int(d["exit_code"]),
                        error=d.get("error"), timed_out=bool(d.get("timed_out")),
                        duration=float(d.get("duration", 0.0)), stdout=str(d.get("stdout", "")),
                        unreached=bool(d.get("unreached")))


def error_to_dict(exc: errors.TpuctlError) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}


def error_from_dict(d: dict[str, Any]) -> errors.TpuctlError:
    cls = getattr(errors, str(d.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.TpuctlError)) or \
            cls is errors.RemoteCommandError:
        cls = errors.TpuctlError
    return cls(str(d.get("message", "connection daemon error")), d.get("hint"))


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

    def request(self, command: str, *, indices: Sequence[int] | None, timeout: float | None,
                stdin: bytes | None, stream: bool, capture: bool) -> dict[str, Any]:
        """One fan-out as the daemon receives it (muxd.Daemon._serve_one reads it)."""
        return {
            "v": PROTOCOL, "pool": self._pool, "key_path": str(self._key_path),
            "targets": [target_to_dict(t) for t in self._targets],
            "connect_timeout": self._connect_timeout,
            "connect_attempts": self._connect_attempts,
            "max_concurrency": self._max_concurrency, "persist": self._persist,
            "command": command, "indices": None if indices is None else list(indices),
            "timeout": timeout, "capture": capture, "stream": stream,
            "stdin": None if stdin is None else base64.b64encode(stdin).decode(),
            "sent_at": time.time(),
        }

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
                sys.stderr.write(f"tpuctl: the connection daemon did not answer within "
                                 f"{ACK_TIMEOUT_S:g}s; running in process (`tpuctl mux stop` "
                                 "ends it)\n")
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
                                           _CANCEL_CONFIRM_S)
                raise
            except (OSError, ValueError):
                pass  # a daemon that died or spoke garbage: handled below
        finally:
            writer.close()
        chosen = sorted({t.index for t in self._targets} if indices is None else set(indices))
        return [WorkerResult(i, None, error="tpuctl's connection daemon exited during the "
                             "command (it may have run)") for i in chosen]

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
