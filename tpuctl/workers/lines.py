"""Streamed output as lines: bytes in, complete UTF-8 lines out, one worker's stream at a time."""

from __future__ import annotations

from tpuctl.workers.base import OnOutput

# A "line" longer than this is delivered in pieces rather than buffered without bound.
MAX_LINE = 1024 * 1024


class LineSplitter:
    """Bytes in, complete UTF-8 lines out (without "\\n"); a trailing partial line on flush."""

    def __init__(self, index: int, stream: str, on_output: OnOutput | None) -> None:
        self._index = index
        self._stream = stream
        self._on_output = on_output
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        if self._on_output is None:
            return
        self._buf += data
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit(bytes(self._buf[start:nl]))
            start = nl + 1
        del self._buf[:start]
        while len(self._buf) >= MAX_LINE:
            self._emit(bytes(self._buf[:MAX_LINE]))
            del self._buf[:MAX_LINE]

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()

    def _emit(self, line: bytes) -> None:
        assert self._on_output is not None
        self._on_output(self._index, self._stream, line.decode("utf-8", errors="replace"))
