"""A blocking client of the connection daemon (workers/muxd.py) for the fast path: the same
requests and frames as workers/mux.py's asyncio client (workers/muxproto.py), without
asyncio (~30 ms to import) or the socket module's enums (~2 ms): one unix socket, one request,
frames read as they come."""

from __future__ import annotations

import _socket

from tpuctl import wirejson
from tpuctl.record import record
from tpuctl.workers import muxproto

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from tpuctl.workers.records import WorkerResult


class NoAck(Exception):
    """The daemon took the connection but did not acknowledge in time (stopped, wedged):
    nothing ran, and the command runs in process (as workers/mux.py does)."""


@record
class Reply:
    """What the daemon answered to a request it acknowledged: its results, its error (a
    `muxproto.error_to_dict`), or, when it vanished before either, `lost_results`."""

    results: tuple[WorkerResult, ...] = ()
    error: dict[str, Any] | None = None
    lost: bool = False


class _Lines:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        """The next line with its newline; b"" at the end of the stream."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl + 1], self.buf[nl + 1:]
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk


def call(request: dict[str, Any], chosen: Sequence[int],
         on_output: Callable[[int, str, str], None] | None = None) -> Reply | None:
    """Send one request; None when no daemon acknowledged it (nothing ran: the full CLI runs
    the command, and starts a daemon). `chosen`: the workers it names (for a lost reply)."""
    path = muxproto.usable_socket_path()
    if path is None:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(muxproto.ACK_TIMEOUT_S)
        sock.connect(path)
        sock.sendall(muxproto.encode(request))
        lines = _Lines(sock)
        if lines.line() != muxproto.ACK:
            sock.close()
            return None
        sock.settimeout(None)
    except TimeoutError:
        sock.close()
        raise NoAck from None
    except OSError:  # no daemon, or it refused
        sock.close()
        return None
    try:
        return _frames(lines, chosen, on_output)
    except KeyboardInterrupt:
        _cancel(sock, lines)
        raise
    finally:
        sock.close()


def _frames(lines: _Lines, chosen: Sequence[int],
            on_output: Callable[[int, str, str], None] | None) -> Reply:
    try:
        while True:
            line = lines.line()
            if not line:
                break
            frame = wirejson.loads(line)
            if not isinstance(frame, dict):
                break
            if "o" in frame:
                if on_output is not None:
                    index, stream, text = frame["o"]
                    on_output(int(index), str(stream), str(text))
            elif "results" in frame:
                return Reply(results=tuple(muxproto.result_from_dict(r)
                                           for r in frame["results"]))
            elif "error" in frame:
                return Reply(error=dict(frame["error"]))
    except (OSError, ValueError, TypeError, KeyError):
        pass  # a daemon that died or spoke garbage: as workers/mux.py, the command may have run
    return Reply(results=tuple(muxproto.lost_results(chosen)), lost=True)


def _cancel(sock: Any, lines: _Lines) -> None:
    """Ctrl-C: closing our end makes the daemon cancel the fan-out (closing every worker's
    channel); wait briefly until it says it has."""
    try:
        sock.shutdown(_socket.SHUT_WR)
        sock.settimeout(muxproto.CANCEL_CONFIRM_S)
        while True:
            line = lines.line()
            if not line or b'"cancelled"' in line:
                return
    except (OSError, KeyboardInterrupt):
        return
