"""STAND-IN for `python -m sgl_jax.launch_server` (sglang-jax), for tests without a TPU.

This is not sglang-jax. It accepts the same command line, validates what sglang-jax
validates, and reproduces the multi-node behaviour tpuctl must cope with, with the same
log lines and HTTP endpoints (sglang-jax main, python/sgl_jax/srt/...):

- `check_server_args`: `tp_size % nnodes == 0` ("tp_size must be divisible by number of
  nodes"); model runner: attention heads divisible by tp/dp ("Number of attention heads (28)
  must be divisible by tensor parallel size (16). Got remainder: 12"), read from the model
  directory's config.json when `--model-path` is a directory.
- rendezvous before anything else (scheduler.sync_pub/sync_sub): rank 0 logs
  "[Publisher 0] Begins to synchronize, wait N Subscribers" and waits for every peer with
  no timeout -- a missing worker hangs rank 0 forever, like the real one -- then
  "[Publisher 0] Succeeds to synchronize!". Ranks > 0 log "[Subscriber R] Begins to
  synchronize", retry until rank 0 answers, then "Starting dummy health check server at
  HOST:PORT" and answer 200 to /health and /health_generate forever.
- rank 0 binds the --dist-init-addr port P (the JAX coordinator's, here the rendezvous and
  heartbeat) and P+5, P+6 (the ZMQ pub/sync ports), then serves HTTP on --host/--port,
  warms up with one /generate and logs "The server is fired up and ready to roll!".
- every generation step is a round trip through all peers, so a dead or stopped peer makes
  /generate hang (until SGL_STANDIN_GENERATE_TIMEOUT, default 600 s like the real warmup)
  and /health_generate answer 503 after SGLANG_HEALTH_CHECK_TIMEOUT (default 20 s), while
  /health keeps answering 200.

Knobs (environment, stand-in only): SGL_STANDIN_SEMANTICS=old mimics sglang-jax 0.0.2
(--tp-size is one group; --dp-size > 1 crashes with the NameError 0.0.2 has);
SGL_STANDIN_LOAD_SECONDS delays "model loading"; SGL_STANDIN_WITHHOLD_RANKS=2 makes rank 2's
process live without ever joining (a worker that never started); SGL_STANDIN_DEVICES checks that
--tp-size equals the device count (new semantics).

Stdlib only, Python >= 3.10, so it runs in any venv or on a worker without packages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("sgl_jax_standin")


def _setup_logging(prefix: str) -> None:
    """The format sglang-jax's configure_logger uses, on stderr."""
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter(f"[%(asctime)s{prefix}] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[h], force=True)


def _fail(exc_name: str, message: str) -> None:
    """Die like an assertion in the real server: the exception's last line, exit 1."""
    log.error("Scheduler hit an exception: Traceback (most recent call last):")
    sys.stderr.write(f"{exc_name}: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sgl_jax.launch_server (stand-in)")
    p.add_argument("--model-path", required=True)
    p.add_argument("--tensor-parallel-size", "--tp-size", dest="tp_size", type=int, default=1)
    p.add_argument("--data-parallel-size", "--dp-size", dest="dp_size", type=int, default=1)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--device", default=None)
    p.add_argument("--attention-backend", default="fa",
                   choices=["native", "fa", "fa_mha", "dsa_sparse"])
    p.add_argument("--load-format", default="auto")
    args, unknown = p.parse_known_args(argv)
    args.unknown = unknown  # tolerated, like flags this stand-in does not model
    return args


def _model_heads(model_path: str) -> int | None:
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return None
    cfg = json.loads(cfg_file.read_text())
    if "num_attention_heads" not in cfg and isinstance(cfg.get("text_config"), dict):
        cfg = cfg["text_config"]
    heads = cfg.get("num_attention_heads")
    return heads if isinstance(heads, int) else None


def validate(args: argparse.Namespace) -> None:
    """What sglang-jax checks before it serves (the part this stand-in can know)."""
    semantics = os.environ.get("SGL_STANDIN_SEMANTICS", "new")
    if args.tp_size % args.nnodes != 0:
        _fail("AssertionError", "tp_size must be divisible by number of nodes")
    if args.nnodes > 1 and not args.dist_init_addr:
        _fail("ValueError", "--dist-init-addr is required when --nnodes > 1")
    if semantics == "old":
        if args.dp_size != 1:  # 0.0.2's engine: `if dp_size == 1: ... else: pass`
            _fail("NameError", "name 'scheduler_pipe_readers' is not defined")
        attention_tp = args.tp_size
    else:
        if args.dp_size < 1 or args.tp_size % args.dp_size:
            _fail("AssertionError", f"tp_size ({args.tp_size}) must be divisible by dp_size "
                                    f"({args.dp_size}) to build the [dp, tp/dp] mesh")
        devices = os.environ.get("SGL_STANDIN_DEVICES")
        if devices and int(devices) != args.tp_size:
            _fail("ValueError", f"mesh [{args.dp_size}, {args.tp_size // args.dp_size}] needs "
                                f"{args.tp_size} devices, found {devices}")
        attention_tp = args.tp_size // args.dp_size
    args.attention_tp = attention_tp


def check_heads(args: argparse.Namespace) -> None:
    heads = _model_heads(args.model_path)
    if heads is None:
        log.info("stand-in: no config.json under %s; attention-head check skipped",
                 args.model_path)
        return
    if heads % args.attention_tp:
        _fail("AssertionError",
              f"Number of attention heads ({heads}) must be divisible by tensor parallel size "
              f"({args.attention_tp}). Got remainder: {heads % args.attention_tp}")


def _listen(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        if e.errno == 99:  # EADDRNOTAVAIL: the address is not this host's; bind all
            s.bind(("0.0.0.0", port))
        else:
            _fail("OSError", f"[Errno {e.errno}] {e.strerror}: cannot bind {host}:{port}")
    s.listen(64)
    return s


class Peer:
    """Rank 0's view of one subscriber: its socket, and replies to generation steps."""

    def __init__(self, rank: int, sock: socket.socket, reader: Any) -> None:
        self.rank = rank
        self.sock = sock
        self.reader = reader
        self.alive = True
        self.lock = threading.Lock()
        self.done: dict[str, threading.Event] = {}

    def send(self, line: str) -> bool:
        with self.lock:
            try:
                self.sock.sendall((line + "\n").encode())
                return True
            except OSError:
                self.alive = False
                return False

    def read_loop(self) -> None:
        try:
            for raw in self.reader:
                msg = raw.decode().strip()
                if msg.startswith("DONE "):
                    ev = self.done.get(msg[5:])
                    if ev is not None:
                        ev.set()
        except OSError:
            pass
        self.alive = False
        log.error("[Publisher 0] lost the connection to node rank %s", self.rank)


class Rank0:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.peers: list[Peer] = []
        self.step_lock = threading.Lock()
        self.broken = False  # a collective that never finished blocks the scheduler for good

    def sync(self) -> None:
        args = self.args
        host, port_s = args.dist_init_addr.rsplit(":", 1)
        port = int(port_s)
        srv = _listen(host, port)
        self._extra = [_listen(host, port + 5), _listen(host, port + 6)]  # pub, sync sockets
        want = args.nnodes - 1
        log.info("[Publisher %s] Begins to synchronize, wait %s Subscribers", 0, want)
        while len(self.peers) < want:  # no timeout, like zmq recv in sync_pub
            conn, _ = srv.accept()
            reader = conn.makefile("rb")
            line = reader.readline().decode().strip()
            if not line.startswith("READY "):
                conn.close()
                continue
            peer = Peer(int(line.split()[1]), conn, reader)
            self.peers.append(peer)
            log.info("[Publisher %s] receives %s READY signal", 0, len(self.peers))
            peer.send("ACK")
        log.info("[Publisher %s] Succeeds to synchronize!", 0)
        for peer in self.peers:
            threading.Thread(target=peer.read_loop, daemon=True).start()
        self._srv = srv

    def step(self, timeout: float) -> bool:
        """One generation step: a round trip through every peer, or False after `timeout`."""
        deadline = time.monotonic() + timeout
        if not self.step_lock.acquire(timeout=timeout):
            return False
        try:
            if self.broken:
                time.sleep(max(0.0, deadline - time.monotonic()))
                return False
            sid = uuid.uuid4().hex
            events = []
            for peer in self.peers:
                ev = threading.Event()
                peer.done[sid] = ev
                events.append((peer, ev))
                peer.send(f"STEP {sid}")
            ok = all(ev.wait(max(0.0, deadline - time.monotonic())) for _, ev in events)
            for peer, _ in events:
                peer.done.pop(sid, None)
            if not ok:
                self.broken = True
            return ok
        finally:
            self.step_lock.release()


def _generate_one(text: str, params: dict[str, Any], t0: float) -> dict[str, Any]:
    n = int(params.get("max_new_tokens", 16))
    words = ("stand-in output for: " + text).split()
    out = " ".join((words * (n // max(1, len(words)) + 1))[:n])
    return {"text": out, "meta_info": {
        "id": uuid.uuid4().hex, "finish_reason": {"type": "length", "length": n},
        "prompt_tokens": len(text.split()), "completion_tokens": n, "cached_tokens": 0,
        "e2e_latency": time.monotonic() - t0}}


def make_handler(args: argparse.Namespace, rank0: Rank0 | None) -> type[BaseHTTPRequestHandler]:
    health_timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
    generate_timeout = float(os.environ.get("SGL_STANDIN_GENERATE_TIMEOUT", "600"))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            pass

        def _send(self, code: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200)
            elif path == "/health_generate":
                if rank0 is None:  # dummy health check server
                    self._send(200)
                elif rank0.step(health_timeout):
                    self._send(200)
                else:
                    log.error("Health check failed. Server couldn't get a response from "
                              "detokenizer for last %s seconds.", int(health_timeout))
                    self._send(503)
            elif path == "/get_model_info" and rank0 is not None:
                self._send(200, {"model_path": args.model_path, "is_generation": True,
                                 "standin": True})
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/generate" or rank0 is None:
                self._send(404, {"detail": "Not Found"})
                return
            t0 = time.monotonic()
            try:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError:
                self._send(400, {"error": "invalid JSON"})
                return
            params = req.get("sampling_params") or {}
            if not rank0.step(generate_timeout):
                self._send(504, {"error": "stand-in: generation did not finish (a peer is "
                                          "gone; the real server hangs here)"})
                return
            text = req.get("text", "")
            if isinstance(text, list):
                self._send(200, [_generate_one(str(t), params, t0) for t in text])
            else:
                self._send(200, _generate_one(str(text), params, t0))

    return Handler


def _serve_http(args: argparse.Namespace, rank0: Rank0 | None) -> ThreadingHTTPServer:
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    try:
        srv = ThreadingHTTPServer((args.host, args.port), make_handler(args, rank0))
    except OSError as e:
        _fail("OSError", f"[Errno {e.errno}] error while attempting to bind on address "
                         f"('{args.host}', {args.port}): {e.strerror}")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def run_rank0(args: argparse.Namespace) -> None:
    rank0 = Rank0(args)
    if args.nnodes > 1:
        rank0.sync()
    check_heads(args)
    time.sleep(float(os.environ.get("SGL_STANDIN_LOAD_SECONDS", "0")))
    _serve_http(args, rank0)
    log.info("Uvicorn running on http://%s:%s (Press CTRL+C to quit)", args.host, args.port)
    warmup_timeout = float(os.environ.get("SGL_STANDIN_GENERATE_TIMEOUT", "600"))
    if not rank0.step(warmup_timeout):
        log.error("Initialization failed. warmup error: the warmup /generate timed out")
        os._exit(1)
    log.info("The server is fired up and ready to roll!")
    while True:
        time.sleep(3600)


def run_subscriber(args: argparse.Namespace) -> None:
    host, port_s = args.dist_init_addr.rsplit(":", 1)
    rank = args.node_rank
    log.info("[Subscriber %s] Begins to synchronize", rank)
    while True:  # zmq REQ connects lazily and waits for the ACK with no timeout
        try:
            sock = socket.create_connection((host, int(port_s)), timeout=2)
            sock.settimeout(None)
            sock.sendall(f"READY {rank}\n".encode())
            reader = sock.makefile("rb")
            if reader.readline().decode().strip() == "ACK":
                break
            sock.close()
        except OSError:
            pass
        time.sleep(0.2)
    log.info("[Subscriber %s] Succeeds to synchronizes!", rank)
    check_heads(args)
    time.sleep(float(os.environ.get("SGL_STANDIN_LOAD_SECONDS", "0")))
    _serve_http(args, None)
    log.info("Starting dummy health check server at %s:%s", args.host, args.port)
    try:
        for raw in reader:  # answer every generation step of rank 0
            msg = raw.decode().strip()
            if msg.startswith("STEP "):
                sock.sendall(f"DONE {msg[5:]}\n".encode())
    except OSError:
        pass
    log.error("[Subscriber %s] lost the connection to rank 0", rank)
    while True:  # the dummy health server keeps answering 200, as the real one does
        time.sleep(3600)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _setup_logging(" TP0" if args.nnodes == 1 else f" N{args.node_rank}")
    log.info("stand-in for sgl_jax.launch_server: %s", " ".join(sys.argv[1:] if argv is None
                                                               else argv))
    validate(args)
    if args.node_rank < 0 or args.node_rank >= args.nnodes:
        _fail("AssertionError", f"node_rank {args.node_rank} out of range for {args.nnodes}")
    withheld = os.environ.get("SGL_STANDIN_WITHHOLD_RANKS", "")
    if str(args.node_rank) in withheld.split(","):
        # a worker whose server never really starts (a failed launch, a stuck import): its
        # process lives but never joins, so rank 0 waits at "Begins to synchronize" forever
        log.info("withheld by SGL_STANDIN_WITHHOLD_RANKS: never joining")
        while True:
            time.sleep(3600)
    if args.node_rank == 0:
        run_rank0(args)
    else:
        run_subscriber(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
