"""The TPU runtime metrics service: tpuctl's reader (tpuctl/remote/tpu_metrics.py) against a
real gRPC server (grpcio, with the local credentials libtpu's server and tpu-info use), both
through grpcio and through its own dependency-free HTTP/2 client; the emulator's server for a
worker, measuring a real busy process marked as that worker's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.emulator import tpumetrics
from tpuctl.emulator.usage import WORKER_ENV, WorkerUsage
from tpuctl.remote import tpu_metrics as tm


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1),
                          st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)),
                max_size=8, unique_by=lambda v: v[0]))
def test_responses_round_trip(values: list) -> None:
    got = tm.decode_response(tm.encode_response(tm.DUTY, values))
    assert got == sorted(values)
    assert tm.decode_request(tm.encode_request(tm.HBM_USED)) == tm.HBM_USED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_decode_to_values_or_fail_cleanly(data: bytes) -> None:
    try:
        tm.decode_response(data)
    except ValueError:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A gRPC server of the metrics service on 127.0.0.1 (local credentials)."""
    answers: dict[str, Any] = {
        tm.DUTY: [(0, 12.5), (1, 99.0)],
        tm.HBM_USED: [(0, 2**30), (1, 3 * 2**30)],
        tm.HBM_TOTAL: [(0, 32 * 2**30), (1, 32 * 2**30)]}

    def get(request: bytes, context: Any) -> bytes:
        name = tm.decode_request(request)
        if answers.get("unavailable"):
            context.abort(grpc.StatusCode.UNAVAILABLE, "no workload")
        return tm.encode_response(name, answers[name])

    handler = grpc.method_handlers_generic_handler(
        tpumetrics.SERVICE, {"GetRuntimeMetric": grpc.unary_unary_rpc_method_handler(get)})
    srv = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = srv.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(
        grpc.LocalConnectionType.LOCAL_TCP))
    srv.start()
    yield f"127.0.0.1:{port}", answers
    srv.stop(None)


def test_grpcio_reads_the_service_as_tpu_info_does(server) -> None:
    addr, _ = server
    client, duty, hbm = tm.read(addr, 5)
    assert client == "grpcio"
    assert duty == [(0, 12.5), (1, 99.0)]
    assert hbm == [(0, 2**30, 32 * 2**30), (1, 3 * 2**30, 32 * 2**30)]


def test_the_builtin_client_speaks_to_a_real_grpc_server(server) -> None:
    """What a worker without grpcio runs: the same answers over our own HTTP/2 client, several
    calls on one connection, an error answer in between."""
    addr, answers = server
    host, port = addr.split(":")
    conn = tm._H2(host, int(port), 5)
    try:
        assert tm.decode_response(conn.call(tm.GET, tm.encode_request(tm.DUTY))) == \
            [(0, 12.5), (1, 99.0)]
        answers["unavailable"] = True
        with pytest.raises(tm.Unavailable, match="error, not metrics"):
            conn.call(tm.GET, tm.encode_request(tm.DUTY))
        answers["unavailable"] = False
        assert tm.decode_response(conn.call(tm.GET, tm.encode_request(tm.HBM_TOTAL))) == \
            [(0, 32 * 2**30), (1, 32 * 2**30)]
    finally:
        conn.close()


def test_the_reader_program_without_grpcio(server, tmp_path) -> None:
    """As top.sh runs it with a worker's python3: no grpcio importable, one line per fact."""
    addr, _ = server
    (tmp_path / "grpc.py").write_text("raise ImportError('no grpcio here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, tm.__file__, addr, "5"], capture_output=True,
                         text=True, env=env, timeout=60).stdout.splitlines()
    assert out[0] == f"tpu source=libtpu addr={addr} client=builtin chips=2"
    assert out[1:] == ["duty i=0 pct=12.50", "duty i=1 pct=99.00",
                       f"hbm i=0 used={2**30} total={32 * 2**30}",
                       f"hbm i=1 used={3 * 2**30} total={32 * 2**30}"]
    refused = subprocess.run([sys.executable, tm.__file__, "127.0.0.1:1", "2"],
                             capture_output=True, text=True, env=env, timeout=60).stdout
    assert refused.startswith("tpu source=none addr=127.0.0.1:1 reason=")


def test_the_emulators_numbers_come_from_the_workers_real_cpu() -> None:
    usage = WorkerUsage("test-node/0", chips=4, hbm_per_chip=16 * 2**30,
                        session_groups=frozenset)
    assert usage.read() is None  # no workload: no metrics, as on a TPU VM
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            env={**os.environ, WORKER_ENV: "test-node/0"},
                            start_new_session=True)
    try:
        time.sleep(0.3)
        got = usage.read()
        assert got is not None
        duty, used = got
        # ~25% a chip on a quiet machine; any share at all on a loaded one
        assert len(duty) == 4 and all(0 < d <= 100 for d in duty)
        assert all(u > 1_000_000 for u in used)  # a quarter of its resident memory each
        # its session's own commands do not count
        quiet = WorkerUsage("test-node/0", 4, 1, lambda: frozenset({os.getpgid(busy.pid)}))
        assert quiet.read() is None
    finally:
        busy.kill()
        busy.wait()
