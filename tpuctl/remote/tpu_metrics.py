#!/usr/bin/env python3
"""Read a TPU worker's runtime metrics where Google's `tpu-info` reads them: libtpu's
metrics service, gRPC on localhost (port 8431 unless the workload's TPU_RUNTIME_METRICS_PORTS
says otherwise), `tpu.monitoring.runtime.RuntimeMetricService/GetRuntimeMetric`, asked for
`tpu.runtime.tensorcore.dutycycle.percent` (per chip) and `tpu.runtime.hbm.memory.usage.bytes`
/ `tpu.runtime.hbm.memory.total.bytes` (per device). Only a process using the TPU (libtpu in
a JAX job) serves it: nothing answering means no metrics, shown as absent.

Runs on workers (shipped with tpuctl's worker scripts, called by top.sh) with any Python 3.8+
and nothing installed: the messages are encoded here (protobuf wire format, the fields the
call uses), and the call goes through grpcio when the interpreter has it, else through a
minimal gRPC client of our own (HTTP/2 without TLS, as gRPC's local credentials speak it).
The emulator's stand-in server (tpuctl/emulator/tpumetrics.py) uses the same encoders.

    tpu_metrics.py HOST:PORT TIMEOUT_SECONDS
prints `tpu source=libtpu addr=.. client=grpcio|builtin chips=N`, then `duty i=.. pct=..` per
chip and `hbm i=.. used=.. total=..` per device; or `tpu source=none addr=.. reason=TEXT`.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: workers may run an older Python
    from collections.abc import Callable, Iterator

    Call = Callable[[str, bytes], bytes]

SERVICE = "/tpu.monitoring.runtime.RuntimeMetricService/"
GET = SERVICE + "GetRuntimeMetric"
DUTY = "tpu.runtime.tensorcore.dutycycle.percent"
HBM_USED = "tpu.runtime.hbm.memory.usage.bytes"
HBM_TOTAL = "tpu.runtime.hbm.memory.total.bytes"
DEVICE_KEY = "device-id"


# -- protobuf wire format (only what these messages need) -------------------------------------
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field: ints for varint and fixed, bytes for
    length-delimited."""
    i = 0
    value: int | bytes
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            value, i = _read_varint(buf, i)
        elif wt == 1:
            value, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wt == 5:
            value, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated message")
        yield num, wt, value


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i
        shift += 7


def _len_field(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def encode_request(metric_name: str) -> bytes:
    """MetricRequest {string metric_name = 1}."""
    return _len_field(1, metric_name.encode())


def decode_request(buf: bytes) -> str:
    for num, _, value in fields(buf):
        if num == 1 and isinstance(value, bytes):
            return value.decode()
    return ""


def encode_response(name: str, values: list[tuple[int, int | float]]) -> bytes:
    """MetricResponse {TPUMetric metric = 1} of (device id, int or float) gauges: Metric
    {Attribute attribute = 1 {key = 1, AttrValue value = 2 {int64 int_attr = 3}}, Gauge
    gauge = 3 {double as_double = 1 | int64 as_int = 2}}."""
    metrics = b""
    for device, value in values:
        attr = _len_field(1, DEVICE_KEY.encode()) + _len_field(2, varint(3 << 3) + varint(device))
        if isinstance(value, float):
            gauge = varint(1 << 3 | 1) + struct.pack("<d", value)
        else:
            gauge = varint(2 << 3) + varint(int(value))
        metrics += _len_field(3, _len_field(1, attr) + _len_field(3, gauge))
    return _len_field(1, _len_field(1, name.encode()) + metrics)


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def decode_response(buf: bytes) -> list[tuple[int, int | float]]:
    """[(device id, value)] of a MetricResponse's gauges, by device id."""
    out = []
    for num, _, tpu_metric in fields(buf):
        if num != 1 or not isinstance(tpu_metric, bytes):
            continue
        for mnum, _, metric in fields(tpu_metric):
            if mnum != 3 or not isinstance(metric, bytes):
                continue
            device: int | None = None
            value: int | float | None = None
            for fnum, _, part in fields(metric):
                if fnum == 1 and isinstance(part, bytes):
                    device = _device(part)
                elif fnum == 3 and isinstance(part, bytes):
                    value = _gauge(part)
            if device is not None and value is not None:
                out.append((device, value))
    return sorted(out)


def _device(attribute: bytes) -> int | None:
    """Attribute {key, AttrValue value = 2 {int_attr = 3 | string_attr = 1 (digits)}}."""
    for num, _, value in fields(attribute):
        if num == 2 and isinstance(value, bytes):
            for anum, awt, v in fields(value):
                if anum == 3 and isinstance(v, int) and awt == 0:
                    return _signed(v)
                if anum == 1 and isinstance(v, bytes) and v.isdigit():
                    return int(v)
    return None


def _gauge(gauge: bytes) -> int | float | None:
    for num, wt, value in fields(gauge):
        if num == 1 and wt == 1 and isinstance(value, int):
            return float(struct.unpack("<d", value.to_bytes(8, "little"))[0])
        if num == 2 and wt == 0 and isinstance(value, int):
            return _signed(value)
    return None


# -- transport --------------------------------------------------------------------------------
class Unavailable(Exception):
    """Nothing (usable) answered: the metrics are absent."""


class _H2:
    """A unary gRPC call over one cleartext HTTP/2 connection (prior knowledge): what
    grpcio's local credentials send on the wire. Headers are sent HPACK-literal; the answer's
    headers are not decoded: a message in DATA is success, none is a failed call."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise Unavailable(f"{e.strerror or e} (no workload using the TPU, or its metrics "
                              "server is off)") from None
        self.authority = f"{host}:{port}".encode()
        self.stream = 1
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self._frame(4, 0, 0, b""))

    @staticmethod
    def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
                + stream.to_bytes(4, "big") + payload)

    @staticmethod
    def _literal(value: bytes) -> bytes:
        """An HPACK string, not Huffman-coded: its length (7-bit prefix) and the bytes."""
        n = len(value)
        return (bytes([n]) if n < 127 else bytes([127]) + varint(n - 127)) + value

    def call(self, path: str, body: bytes) -> bytes:
        sid, self.stream = self.stream, self.stream + 2
        headers = (b"\x83\x86" + b"\x04" + self._literal(path.encode())
                   + b"\x01" + self._literal(self.authority)
                   + b"\x0f\x10" + self._literal(b"application/grpc")
                   + b"\x00" + self._literal(b"te") + self._literal(b"trailers"))
        message = b"\x00" + len(body).to_bytes(4, "big") + body
        self.sock.sendall(self._frame(1, 0x4, sid, headers) + self._frame(0, 0x1, sid, message))
        data = b""
        while True:
            head = self._read(9)
            size, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
            payload = self._read(size)
            if kind == 4 and not flags & 1:
                self.sock.sendall(self._frame(4, 1, 0, b""))  # settings: acknowledged
            elif kind == 6 and not flags & 1:
                self.sock.sendall(self._frame(6, 1, 0, payload))  # ping: answered
            elif kind == 7:
                raise Unavailable("the metrics server closed the connection")
            elif stream == sid and kind == 3:
                raise Unavailable("the metrics server reset the call")
            elif stream == sid and kind == 0:
                if flags & 0x8:  # padded
                    payload = payload[1:len(payload) - payload[0]]
                data += payload  # answers are far below the 64 KiB initial window
            if stream == sid and kind in (0, 1, 9) and flags & 0x1:
                break
        if len(data) < 5 or data[0] != 0:
            raise Unavailable("the metrics service answered an error, not metrics (is a "
                              "workload using the TPU?)")
        return data[5:5 + int.from_bytes(data[1:5], "big")]

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise Unavailable("the metrics server closed the connection")
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


def _grpcio(addr: str, timeout: float) -> tuple[Call, Callable[[], None]] | None:
    """grpcio's unary call with local credentials, as tpu-info makes it; None without
    grpcio."""
    try:
        import grpc
    except ImportError:
        return None
    channel = grpc.secure_channel(
        addr, grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP))
    method = channel.unary_unary(GET)

    def call(path: str, body: bytes) -> bytes:
        try:
            return bytes(method(body, timeout=timeout))
        except grpc.RpcError as e:
            raise Unavailable(f"{e.code().name.lower()}: {e.details() or ''}".strip()) from None

    return call, channel.close


def read(addr: str, timeout: float
         ) -> tuple[str, list[tuple[int, float]], list[tuple[int, int, int]]]:
    """(client, [(chip, duty %)], [(device, used, total)]); Unavailable when absent."""
    host, _, port = addr.rpartition(":")
    got = _grpcio(addr, timeout)
    client = "grpcio"
    if got is None:
        conn = _H2(host.strip("[]"), int(port), timeout)
        got, client = (conn.call, conn.close), "builtin"
    call, close = got
    try:
        duty = decode_response(call(GET, encode_request(DUTY)))
        used = dict(decode_response(call(GET, encode_request(HBM_USED))))
        total = dict(decode_response(call(GET, encode_request(HBM_TOTAL))))
    except (OSError, ValueError) as e:
        raise Unavailable(f"{type(e).__name__}: {e}") from None
    finally:
        close()
    hbm = [(d, int(used[d]), int(total.get(d, 0))) for d in sorted(used)]
    return client, [(c, float(v)) for c, v in duty], hbm


def main(argv: list[str]) -> int:
    addr, timeout = argv[1], float(argv[2]) if len(argv) > 2 else 2.0
    try:
        client, duty, hbm = read(addr, timeout)
    except Unavailable as e:
        print(f"tpu source=none addr={addr} reason={' '.join(str(e).split())}")
        return 0
    print(f"tpu source=libtpu addr={addr} client={client} chips={len(duty)}")
    for chip, pct in duty:
        print(f"duty i={chip} pct={pct:.2f}")
    for device, u, t in hbm:
        print(f"hbm i={device} used={u} total={t}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
