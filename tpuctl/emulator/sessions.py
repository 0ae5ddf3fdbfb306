"""One SSH session channel on an emulated worker: exec (`bash -c CMD`) or a shell (`bash -i`,
on a pty when asked), its input and output with flow control, signals, and how it ends (exit
status once output is drained; a lost channel kills the command's process group)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpuctl.emulator.childio import (
    ProcProtocol,
    PtyReader,
    PtyWriter,
    acquire_controlling_tty,
    set_winsize,
)
from tpuctl.emulator.processes import NODE_ENV, group_is_marked, send_signal
from tpuctl.emulator.workerfaults import apply_skew
from tpuctl.workers.sshlib import asyncssh

if TYPE_CHECKING:
    from tpuctl.emulator.vms import VmWorker

log = logging.getLogger(__name__)

# After the shell exits on a pty, output still in flight is read for at most this long
# (a background job holding the pty open must not keep the session alive forever).
_PTY_DRAIN_SECONDS = 0.5


def _signal_name(signum: int) -> str | None:
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return None


class Session(asyncssh.SSHServerSession[bytes]):
    """One SSH session channel: exec (`bash -c CMD`), or a shell (`bash -i` on a pty)."""

    def __init__(self, worker: VmWorker, username: str) -> None:
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
            # the VM's own (internal) address, even through the external one: GCP's 1:1 NAT
            env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {worker.ip} {here[1]}"
        if self._term_type is not None:
            env["TERM"] = self._term_type
        if self._command is not None:
            argv = ["bash", "-c", self._command]
        elif self._term_type is not None:
            argv = ["bash", "-i"]
        else:
            argv = ["bash"]  # shell without a pty: commands come on stdin
        world = worker.node.world()
        if world is not None:
            skew = world.skew(worker.node.node_id, worker.index)
            if skew:  # package-skew: venvs appear with bootstrap, so look at every login
                await asyncio.to_thread(apply_skew, Path(env["HOME"]), skew)
            if world.stuck(worker.node.node_id, worker.index):
                # stuck-workers: the command stops before it does anything and stays stopped
                # (the SIGTERM + SIGCONT of a closed channel ends it, as a kill would)
                argv = ["bash", "-c", 'kill -STOP $$; exec "$@"', "tpuctl-stuck", *argv]
        loop = asyncio.get_running_loop()
        try:
            if self._term_type is not None:
                await self._spawn_pty(loop, argv, env)
            else:
                self._open_outputs = {1, 2}  # before spawning: callbacks may come at once
                await loop.subprocess_exec(
                    lambda: ProcProtocol(self),
                    *argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=env["HOME"],
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
            set_winsize(master, self._term_size)
            self._open_outputs = {1}
            await loop.subprocess_exec(
                lambda: ProcProtocol(self),
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=env["HOME"],
                env=env,
                start_new_session=True,
                preexec_fn=acquire_controlling_tty,
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
            lambda: PtyReader(self), os.fdopen(master, "rb", buffering=0)
        )
        self._pty_in, _ = await loop.connect_write_pipe(
            lambda: PtyWriter(self), os.fdopen(writer_fd, "wb", buffering=0)
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
                set_winsize(self._pty_master, self._term_size)

    def signal_received(self, signal_name: str) -> None:
        signum = getattr(signal, f"SIG{signal_name}", None)
        if self._pid is not None and self._returncode is None and signum is not None:
            send_signal(self._pid, signum, group=True)

    def break_received(self, msec: int) -> bool:
        if self._pid is not None and self._returncode is None:
            send_signal(self._pid, signal.SIGINT, group=True)
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
            send_signal(pid, signal.SIGHUP, group=True)  # what a vanished terminal means
        send_signal(pid, signal.SIGTERM, group=True)
        send_signal(pid, signal.SIGCONT, group=True)  # a stopped process can't act on SIGTERM

        marker = f"{NODE_ENV}={self._worker.node.marker}".encode()

        def _force() -> None:
            # Once the leader is reaped and the group empties, the kernel may hand the id to
            # a new session leader (every SSH command here is one): kill only our own.
            if self._returncode is not None and not group_is_marked(pid, marker):
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 0)  # does the group still exist?
                os.killpg(pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(self._worker.node.kill_grace, _force)
