"""How a session's child process talks to its SSH channel: asyncio protocols for its pipes
or its pty (flow control in both directions), and the pty's terminal setup."""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tpuctl.emulator.sessions import Session


def acquire_controlling_tty() -> None:
    """Runs in the child between fork and exec (after setsid): make the pty slave (fd 0) the
    controlling terminal so bash gets job control and ^C reaches the foreground job."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    cols, rows, xpix, ypix = size
    if cols and rows:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpix, ypix))


class ProcProtocol(asyncio.SubprocessProtocol):
    """Glue between the child's pipes and the SSH channel (flow control in both directions)."""

    def __init__(self, session: Session) -> None:
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


class PtyReader(asyncio.Protocol):
    def __init__(self, session: Session) -> None:
        self._session = session

    def data_received(self, data: bytes) -> None:
        self._session.send_output(data, stderr=False)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # EIO on the master means every slave fd is closed: the pty's output is complete.
        self._session.output_closed(1)


class PtyWriter(asyncio.Protocol):
    def __init__(self, session: Session) -> None:
        self._session = session

    def pause_writing(self) -> None:
        self._session.pause_input()

    def resume_writing(self) -> None:
        self._session.resume_input()
