"""SSH-reachable emulated workers: one asyncssh server per worker on its own 127.x.y.z address.

Commands really run (bash on this machine) with the env a TPU VM worker would give a JAX job,
except that devices are CPUs. Every process a node starts carries `TPUCTL_EMULATOR_NODE=<id>`
in its environment, which is how `stop_node` finds the ones that daemonized (never by name:
all emulated workers share one kernel).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tpuctl.workers.sshlib import asyncssh

log = logging.getLogger(__name__)

HOST_KEY_FILE = "ssh_host_ed25519_key"
NODE_ENV = "TPUCTL_EMULATOR_NODE"
# Env vars a client may set through SSH "env" requests (OpenSSH's AcceptEnv default spirit).
_CLIENT_ENV_NAMES = frozenset({"LANG", "TERM"})
# The host's network configuration reaches emulated workers as a VM image would carry it:
# proxies, CA bundles and package-index settings (never credentials of the emulator's user).
_HOST_NETWORK_ENV = (
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT",
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
)
_CLIENT_ENV_PREFIXES = ("LC_",)
# After the shell exits on a pty, output still in flight is read for at most this long
# (a background job holding the pty open must not keep the session alive forever).
_PTY_DRAIN_SECONDS = 0.5

AuthorizedKeys = Callable[[str], list[str]]


class SshFaults(Protocol):
    """The SSH side of `faults.Faults`: whether to refuse a connection, when to cut one."""

    def refuse_ssh(self) -> bool: ...

    def ssh_drop_delay(self) -> float | None: ...


def worker_ip(slot: int, index: int) -> str:
    """Loopback address of worker `index` of the node in `slot` (all of 127/8 routes to lo)."""
    if not 1 <= slot <= 255:
        raise ValueError(f"slot must be in 1..255 (127.0.x.x would overlap localhost), got {slot}")
    if not 0 <= index < 250 * 256:
        raise ValueError(f"worker index out of range: {index}")
    return f"127.{slot}.{index // 250}.{index % 250 + 1}"


@dataclass(frozen=True)
class EmulatedWorker:
    """What the REST side publishes about a worker (network endpoint + host key attribute)."""

    index: int
    ip: str
    ssh_port: int
    host_key: str  # OpenSSH public key line "ssh-ed25519 AAAA..."


def _image_path() -> str:
    """The machine's PATH without the emulator's own virtualenv: a worker is a VM image with
    the system's tools, not a shell inside tpuctl's venv (whose python refuses --user)."""
    own = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    venv = os.environ.get("VIRTUAL_ENV")
    drop = {p for p in (own, os.path.join(venv, "bin") if venv else None) if p}
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
             if p and os.path.normpath(p) not in {os.path.normpath(d) for d in drop}]
    return os.pathsep.join(parts) or os.defpath


def key_id(line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of an authorized_keys/metadata line; options and comments ignored."""
    tokens = line.split()
    for i, tok in enumerate(tokens[:-1]):
        if tok.startswith(("ssh-", "ecdsa-", "sk-")):
            return tok, tokens[i + 1]
    return None


def _public_line(key: asyncssh.SSHKey) -> str:
    """"type base64" without a comment: the form guest attributes publish."""
    ident = key_id(key.export_public_key("openssh").decode())
    assert ident is not None
    return f"{ident[0]} {ident[1]}"


def _load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Host keys persist so a restarted emulator or a stop/start keeps the pinned identity."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written key behind
    path.with_name(path.name + ".pub").write_text(_public_line(key) + "\n")
    return key


def _acquire_controlling_tty() -> None:
    """Runs in the child between fork and exec (after setsid): make the pty slave (fd 0) the
    controlling terminal so bash gets job control and ^C reaches the foreground job."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    cols, rows, xpix, ypix = size
    if cols and rows:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


def _signal_name(signum: int) -> str | None:
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return None


def _find_marked_pids(marker: bytes) -> list[int]:
    """Pids whose exec-time environment holds exactly `marker` (e.g. b"TPUCTL_EMULATOR_NODE=x").

    Zombies and processes of other users have unreadable/empty environ and are skipped.
    """
    me = os.getpid()
    uid = os.getuid()
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if marker in data.split(b"\0"):
            found.append(int(name))
    return found


def _group_is_marked(pgid: int, marker: bytes) -> bool:
    """Does a live member of process group `pgid` carry `marker` in its environment?"""
    for pid in _find_marked_pids(marker):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid:
                return True
    return False


def _kill(pid: int, sig: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


@dataclass(eq=False)
class _Node:
    node_id: str
    slot: int
    chips_per_host: int
    authorized_keys: AuthorizedKeys
    kill_grace: float = 2.0
    faults: Callable[[], SshFaults | None] = lambda: None
    workers: list[_Worker] = field(default_factory=list)
    pgids: set[int] = field(default_factory=set)  # process groups of live direct children
    stopping: bool = False


@dataclass(eq=False)
class _Worker:
    node: _Node
    index: int
    ip: str
    port: int
    home: Path
    host_key: asyncssh.SSHKey
    public_key: str
    uv_cache: Path
    listener: asyncssh.SSHAcceptor | None = None
    reachable: bool = True
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    accepted: int = 0

    def public(self) -> EmulatedWorker:
        return EmulatedWorker(self.index, self.ip, self.port, self.public_key)

    def env(self, username: str, client_env: dict[str, str]) -> dict[str, str]:
        """A clean env, as sshd gives a login: nothing leaks from the emulator except PATH."""
        env = {k: os.environ[k] for k in _HOST_NETWORK_ENV if k in os.environ}
        env.update({
            k: v
            for k, v in client_env.items()
            if k in _CLIENT_ENV_NAMES or k.startswith(_CLIENT_ENV_PREFIXES)
        })
        env.update(
            HOME=str(self.home),
            USER=username,
            LOGNAME=username,
            SHELL="/bin/bash",
            PATH=_image_path(),
            LANG=client_env.get("LANG", "C.UTF-8"),
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={self.node.chips_per_host}",
            TPU_WORKER_ID=str(self.index),
            TPUCTL_EMULATOR="1",
            UV_CACHE_DIR=str(self.uv_cache),
            # one pip cache too: bootstrap installs uv with pip once per worker home
            PIP_CACHE_DIR=str(self.uv_cache.parent / "pip-cache"),
            # each worker gets its own emulated TPU device files and libtpu lockfile, so the
            # busy check sees only its own holders although workers share one kernel
            TPUCTL_TPU_DEVICES=str(self.home.parent / "dev" / "accel*"),
            TPUCTL_LIBTPU_LOCKFILE=str(self.home.parent / "tmp" / "libtpu_lockfile"),
        )
        self._ensure_devices()
        env[NODE_ENV] = self.node.node_id  # last: a client can never override the kill marker
        return env

    def _ensure_devices(self) -> None:
        dev = self.home.parent / "dev"
        if not dev.is_dir():
            dev.mkdir(parents=True, exist_ok=True)
            for i in range(self.node.chips_per_host):
                (dev / f"accel{i}").touch()
        (self.home.parent / "tmp").mkdir(exist_ok=True)

    async def open_listener(self) -> None:
        self.listener = await asyncssh.listen(
            host=self.ip,
            port=self.port,
            server_factory=lambda: _WorkerServer(self),
            server_host_keys=[self.host_key],
            encoding=None,  # bytes end to end: commands' output is not ours to decode
            line_editor=False,  # a real pty does the line editing, not asyncssh
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=30,
            reuse_address=True,
            # asyncssh re-evaluates these on every login: skip the FQDN lookup (GSSAPI) and
            # the X.509 trust-store probes, which this server never uses
            gss_host=None,
            x509_trusted_certs=None,
            x509_trusted_cert_paths=None,
        )

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.abort()


class _WorkerServer(asyncssh.SSHServer):
    """Public-key-only auth against the node's current `ssh-keys` (asked at every login)."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._worker.accepted += 1
        self._worker.connections.add(conn)
        if self._worker.node.stopping or not self._worker.reachable:
            conn.abort()
            return
        faults = self._worker.node.faults()
        if faults is not None and faults.refuse_ssh():
            log.info("fault: refusing an SSH connection to %s", self._worker.ip)
            conn.abort()  # before the version exchange: the client sees the connection lost

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._worker.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # auth is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        """direct-tcpip (`ssh -L`, `tpuctl forward`), as sshd allows it: here only to
        loopback destinations, since every emulated worker's network is this machine's."""
        try:
            return ipaddress.ip_address(dest_host).is_loopback
        except ValueError:
            return dest_host == "localhost"

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        offered = key_id(key.export_public_key("openssh").decode())
        try:
            lines = self._worker.node.authorized_keys(username)
        except Exception:
            log.exception("authorized_keys(%r) failed; refusing", username)
            return False
        return offered is not None and any(key_id(line) == offered for line in lines)

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        assert self._conn is not None
        return _Session(self._worker, self._conn.get_extra_info("username"))


class _ProcProtocol(asyncio.SubprocessProtocol):
    """Glue between the child's pipes and the SSH channel (flow control in both directions)."""

    def __init__(self, session: _Session) -> None:
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._session.process_started(transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self._session.send_output(data, stderr=fd == 2)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in (1, 2):
            self._session.output_closed(fd)

    def process_exited(self) -> None:
        self._session.process_exited()

    def pause_writing(self) -> None:  # child's stdin pipe is full
        self._session.pause_input()

    def resume_writing(self) -> None:
        # Deferred: resuming may deliver the client's EOF, and write_eof from inside the
        # pipe transport's own flush callback makes asyncio report the pipe's loss twice.
        asyncio.get_running_loop().call_soon(self._session.resume_input)


class _PtyReader(asyncio.Protocol):
    def __init__(self, session: _Session) -> None:
        self._session = session

    def data_received(self, data: bytes) -> None:
        self._session.send_output(data, stderr=False)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # EIO on the master means every slave fd is closed: the pty's output is complete.
        self._session.output_closed(1)


class _PtyWriter(asyncio.Protocol):
    def __init__(self, session: _Session) -> None:
        self._session = session

    def pause_writing(self) -> None:
        self._session.pause_input()

    def resume_writing(self) -> None:
        self._session.resume_input()


class _Session(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel: exec (`bash -c CMD`), or a shell (`bash -i` on a pty)."""

    def __init__(self, worker: _Worker, username: str) -> None:
        self._worker = worker
        self._username = username
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term_type: str | None = None
        self._term_size: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._command: str | None = None
        self._proc: asyncio.SubprocessTransport | None = None
        self._pid: int | None = None
        self._returncode: int | None = None
        self._open_outputs: set[int] = set()
        self._pty_master: int | None = None
        self._pty_in: asyncio.WriteTransport | None = None
        self._pty_out: asyncio.ReadTransport | None = None
        self._channel_gone = False
        self._done = False
        self._input_paused = False
        self._output_paused = False
        self._pending_input: list[bytes] = []
        self._eof_pending = False
        self._drop_timer: asyncio.TimerHandle | None = None

    # -- requests from the client ------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any
    ) -> bool:
        self._term_type = term_type or "xterm"
        self._term_size = term_size
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False  # no sftp/scp: code travels by git, secrets by stdin

    def session_started(self) -> None:
        assert self._chan is not None
        self._chan.get_connection().create_task(self._start())

    # -- starting the child --------------------------------------------------------------------
    async def _start(self) -> None:
        assert self._chan is not None
        chan = self._chan
        worker = self._worker
        client_env = dict(chan.get_environment())
        env = worker.env(self._username, client_env)
        peer, here = chan.get_extra_info("peername"), chan.get_extra_info("sockname")
        if peer and here:  # as sshd sets it: which TCP connection this session came over
            env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {here[0]} {here[1]}"
        if self._term_type is not None:
            env["TERM"] = self._term_type
        if self._command is not None:
            argv = ["bash", "-c", self._command]
        elif self._term_type is not None:
            argv = ["bash", "-i"]
        else:
            argv = ["bash"]  # shell without a pty: commands come on stdin
        loop = asyncio.get_running_loop()
        try:
            if self._term_type is not None:
                await self._spawn_pty(loop, argv, env)
            else:
                self._open_outputs = {1, 2}  # before spawning: callbacks may come at once
                await loop.subprocess_exec(
                    lambda: _ProcProtocol(self),
                    *argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=worker.home,
                    env=env,
                    start_new_session=True,  # own process group: killable as one
                )
        except OSError as exc:
            if not self._channel_gone:
                chan.write_stderr(f"tpuctl emulator: cannot start bash: {exc}\n".encode())
                chan.exit(127)
            return
        if self._channel_gone or worker.node.stopping:
            self._kill_group()
            return
        faults = worker.node.faults()
        delay = faults.ssh_drop_delay() if faults is not None else None
        if delay is not None:
            self._drop_timer = loop.call_later(delay, self._drop_connection)
        stdin = self._stdin()
        if stdin is not None and self._pty_in is None:
            # Any data the kernel pipe (64 KiB) can't take pauses the channel, and resume comes
            # only once fully flushed: the pipe is the buffer, and a pending EOF knows when
            # it may close the pipe.
            stdin.set_write_buffer_limits(high=0, low=0)
        pending, self._pending_input = self._pending_input, []
        for data in pending:
            self._write_input(data)
        if not self._stdin_busy():
            self.resume_input()

    async def _spawn_pty(
        self, loop: asyncio.AbstractEventLoop, argv: list[str], env: dict[str, str]
    ) -> None:
        master, slave = os.openpty()
        try:
            _set_winsize(master, self._term_size)
            self._open_outputs = {1}
            await loop.subprocess_exec(
                lambda: _ProcProtocol(self),
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self._worker.home,
                env=env,
                start_new_session=True,
                preexec_fn=_acquire_controlling_tty,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._pty_master = master
        os.set_blocking(master, False)
        writer_fd = os.dup(master)  # separate fds: each transport closes its own
        self._pty_out, _ = await loop.connect_read_pipe(
            lambda: _PtyReader(self), os.fdopen(master, "rb", buffering=0)
        )
        self._pty_in, _ = await loop.connect_write_pipe(
            lambda: _PtyWriter(self), os.fdopen(writer_fd, "wb", buffering=0)
        )

    def _drop_connection(self) -> None:
        """Fault injection: the network goes away under a running command. The connection is
        aborted; like sshd on a lost client, the command's process group is then killed."""
        self._drop_timer = None
        if self._done or self._channel_gone or self._chan is None:
            return
        log.info("fault: cutting an SSH session on %s mid-stream", self._worker.ip)
        self._chan.get_connection().abort()

    def _cancel_drop(self) -> None:
        if self._drop_timer is not None:
            self._drop_timer.cancel()
            self._drop_timer = None

    # -- data in both directions ---------------------------------------------------------------
    def _stdin(self) -> asyncio.WriteTransport | None:
        if self._pty_in is not None:
            return self._pty_in
        if self._proc is not None:
            pipe = self._proc.get_pipe_transport(0)
            return pipe if isinstance(pipe, asyncio.WriteTransport) else None
        return None

    def _stdin_busy(self) -> bool:
        stdin = self._stdin()
        return stdin is not None and stdin.get_write_buffer_size() > 0

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._stdin() is None and self._returncode is None:
            # asyncssh resumes reading right after session_started; hold input until the
            # child exists, and stop the flow so the hold stays small
            self._pending_input.append(data)
            self.pause_input()
            return
        self._write_input(data)

    def _write_input(self, data: bytes) -> None:
        stdin = self._stdin()
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def eof_received(self) -> bool:
        if self._pty_in is None:  # on a pty, EOF is the user's ^D, already in the data
            self._eof_pending = True
            self._maybe_send_eof()
        return True  # keep the channel half-open: output may still follow

    def _maybe_send_eof(self) -> None:
        # Close the pipe only once flushed, so the EOF never overtakes buffered input.
        stdin = self._stdin()
        if stdin is None or self._stdin_busy():
            return
        self._eof_pending = False
        if not stdin.is_closing():
            stdin.write_eof()

    def pause_input(self) -> None:
        if self._chan is not None and not self._channel_gone:
            self._input_paused = True
            self._chan.pause_reading()

    def resume_input(self) -> None:
        if self._eof_pending:
            self._maybe_send_eof()
        if self._chan is not None and not self._channel_gone and self._input_paused:
            self._input_paused = False
            self._chan.resume_reading()

    def send_output(self, data: bytes, *, stderr: bool) -> None:
        if self._chan is None or self._channel_gone or self._done:
            return
        if stderr:
            self._chan.write_stderr(data)
        else:
            self._chan.write(data)

    def _output_transports(self) -> list[asyncio.ReadTransport]:
        out: list[asyncio.ReadTransport] = []
        if self._pty_out is not None:
            out.append(self._pty_out)
        if self._proc is not None:
            for fd in (1, 2):
                pipe = self._proc.get_pipe_transport(fd)
                if isinstance(pipe, asyncio.ReadTransport):
                    out.append(pipe)
        return out

    def pause_writing(self) -> None:  # the channel's window is full: stop reading the child
        self._output_paused = True
        for t in self._output_transports():
            with contextlib.suppress(RuntimeError):
                t.pause_reading()

    def resume_writing(self) -> None:
        self._output_paused = False
        for t in self._output_transports():
            with contextlib.suppress(RuntimeError):
                t.resume_reading()

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._term_size = (width, height, pixwidth, pixheight)
        if self._pty_master is not None:
            # the kernel sends SIGWINCH to the pty's foreground process group
            with contextlib.suppress(OSError):
                _set_winsize(self._pty_master, self._term_size)

    def signal_received(self, signal_name: str) -> None:
        signum = getattr(signal, f"SIG{signal_name}", None)
        if self._pid is not None and self._returncode is None and signum is not None:
            _kill(self._pid, signum, group=True)

    def break_received(self, msec: int) -> bool:
        if self._pid is not None and self._returncode is None:
            _kill(self._pid, signal.SIGINT, group=True)
            return True
        return False

    def process_started(self, transport: asyncio.SubprocessTransport) -> None:
        self._proc = transport
        self._pid = transport.get_pid()
        self._worker.node.pgids.add(self._pid)

    # -- completion ------------------------------------------------------------------------------
    def output_closed(self, fd: int) -> None:
        self._open_outputs.discard(fd)
        self._maybe_finish()

    def process_exited(self) -> None:
        assert self._proc is not None
        self._returncode = self._proc.get_returncode()
        if self._pid is not None:
            self._worker.node.pgids.discard(self._pid)
        if self._term_type is not None and self._open_outputs:
            loop = asyncio.get_running_loop()
            loop.call_later(_PTY_DRAIN_SECONDS, self._finish)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        # like sshd: exit status goes out once the child exited AND its output is drained
        if self._returncode is not None and not self._open_outputs:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._cancel_drop()
        rc = self._returncode
        chan = self._chan
        if chan is not None and not self._channel_gone and rc is not None:
            name = _signal_name(-rc) if rc < 0 else None
            if rc >= 0:
                chan.exit(rc)
            elif name is not None:
                chan.exit_with_signal(name)
            else:
                chan.exit(128 - rc)
        self._release()

    def _release(self) -> None:
        for t in (self._pty_out, self._pty_in):
            if t is not None:
                t.close()
        self._pty_out = self._pty_in = None
        self._pty_master = None
        if self._proc is not None and self._returncode is not None:
            self._proc.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """The client closed the channel (or the connection dropped): end the command."""
        self._channel_gone = True
        self._cancel_drop()
        if self._returncode is None and self._pid is not None:
            self._kill_group()
        if self._returncode is not None:
            self._done = True
            self._release()

    def _kill_group(self) -> None:
        pid = self._pid
        if pid is None:
            return
        if self._pty_out is not None:
            _kill(pid, signal.SIGHUP, group=True)  # what a vanished terminal means
        _kill(pid, signal.SIGTERM, group=True)
        _kill(pid, signal.SIGCONT, group=True)  # a stopped process can't act on SIGTERM

        marker = f"{NODE_ENV}={self._worker.node.node_id}".encode()

        def _force() -> None:
            # Once the leader is reaped and the group empties, the kernel may hand the id to
            # a new session leader (every SSH command here is one): kill only our own.
            if self._returncode is not None and not _group_is_marked(pid, marker):
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 0)  # does the group still exist?
                os.killpg(pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(self._worker.node.kill_grace, _force)


class WorkerHost:
    """All emulated workers of all nodes, in this process, sharing one SSH port."""

    def __init__(self, state_dir: Path, ssh_port: int, *, kill_grace: float = 2.0) -> None:
        self._state_dir = Path(state_dir)
        self._port = ssh_port
        self._kill_grace = kill_grace
        self._nodes: dict[str, _Node] = {}
        self._uv_cache = self._state_dir / "uv-cache"
        self.faults: SshFaults | None = None  # set by the emulator: refused and cut connections

    @property
    def ssh_port(self) -> int:
        return self._port

    def _node_dir(self, node_id: str) -> Path:
        if not node_id or node_id in (".", "..") or "/" in node_id or "\0" in node_id:
            raise ValueError(f"node id must be a single path component, got {node_id!r}")
        return self._state_dir / "nodes" / node_id

    async def start_node(
        self,
        node_id: str,
        slot: int,
        num_workers: int,
        chips_per_host: int,
        authorized_keys: AuthorizedKeys,
    ) -> list[EmulatedWorker]:
        """Bring up a node's workers (idempotent while running); host keys survive restarts."""
        running = self._nodes.get(node_id)
        if running is not None and not running.stopping:
            return [w.public() for w in running.workers]
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        node_dir = self._node_dir(node_id)
        node = _Node(
            node_id, slot, chips_per_host, authorized_keys, self._kill_grace, lambda: self.faults
        )
        self._uv_cache.mkdir(parents=True, exist_ok=True, mode=0o700)

        def prepare() -> None:  # file I/O off the event loop
            for i in range(num_workers):
                wdir = node_dir / f"w{i}"
                home = wdir / "home"
                home.mkdir(parents=True, exist_ok=True)
                for d in (node_dir, wdir, home):  # like a VM's home: its user's only
                    d.chmod(0o700)
                key = _load_or_create_host_key(wdir / HOST_KEY_FILE)
                node.workers.append(
                    _Worker(
                        node, i, worker_ip(slot, i), self._port, home, key, _public_line(key),
                        self._uv_cache,
                    )
                )

        await asyncio.to_thread(prepare)
        self._nodes[node_id] = node
        results = await asyncio.gather(
            *(w.open_listener() for w in node.workers), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for w in node.workers:
                w.close_listener()
            del self._nodes[node_id]
            raise errors[0]
        return [w.public() for w in node.workers]

    def node_workers(self, node_id: str) -> list[EmulatedWorker]:
        return [w.public() for w in self._nodes[node_id].workers]

    def connections_accepted(self, node_id: str, index: int) -> int:
        """How many TCP connections worker `index` has accepted (tests count reuse with it)."""
        return self._nodes[node_id].workers[index].accepted

    async def set_reachable(
        self, node_id: str, index: int, reachable: bool, *, drop_connections: bool = True
    ) -> None:
        """Fault injection: close (and drop) or reopen one worker's SSH listener."""
        worker = self._nodes[node_id].workers[index]
        worker.reachable = reachable
        if not reachable:
            worker.close_listener()
            if drop_connections:
                worker.drop_connections()
        elif worker.listener is None:
            await worker.open_listener()

    def drop_connections(self, node_id: str, index: int) -> None:
        """Fault injection: abort a worker's live SSH connections (its commands get killed)."""
        self._nodes[node_id].workers[index].drop_connections()

    async def stop_node(self, node_id: str) -> None:
        """Close the node's listeners and connections and kill every process it started."""
        node = self._nodes.get(node_id)
        if node is not None:
            node.stopping = True
            for w in node.workers:
                w.close_listener()
                w.drop_connections()
        await self._kill_node_processes(node_id, node)
        if node is not None:
            for w in node.workers:
                if w.listener is not None:  # reopened by a racing set_reachable
                    w.close_listener()
            self._nodes.pop(node_id, None)

    async def _kill_node_processes(self, node_id: str, node: _Node | None) -> None:
        """SIGTERM everything marked with the node's id, SIGKILL what remains after the grace.

        Rescans each round, so children forked meanwhile are caught too.
        """
        marker = f"{NODE_ENV}={node_id}".encode()
        deadline = time.monotonic() + self._kill_grace
        sig = signal.SIGTERM
        while True:
            if node is not None:
                for pgid in list(node.pgids):
                    _kill(pgid, sig, group=True)
            pids = await asyncio.to_thread(_find_marked_pids, marker)
            if not pids and (node is None or not node.pgids):
                return
            for pid in pids:
                _kill(pid, sig)
                if sig == signal.SIGTERM:
                    _kill(pid, signal.SIGCONT)
            if sig == signal.SIGTERM and time.monotonic() >= deadline:
                sig = signal.SIGKILL
                continue
            if sig == signal.SIGKILL and time.monotonic() >= deadline + 5.0:
                log.warning("node %s: processes survive SIGKILL: %s", node_id, pids)
                return
            await asyncio.sleep(0.05)

    def remove_node(self, node_id: str) -> None:
        """Delete a (stopped) node's directories, host keys included."""
        if node_id in self._nodes:
            raise RuntimeError(f"node {node_id} is running; stop_node first")
        shutil.rmtree(self._node_dir(node_id), ignore_errors=True)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop_node(n) for n in list(self._nodes)))
