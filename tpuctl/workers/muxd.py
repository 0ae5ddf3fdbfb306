"""tpuctl's per-user connection daemon: keeps worker SSH connections open between commands.

Started by `MuxWorkers` (workers/mux.py) when a command finds none; exits after `persist`
seconds without a request (each request may extend it), or on SIGTERM / `tpuctl mux stop`.
It serves only its own user: the socket lives in ~/.tpuctl/mux (0700), is created 0600, and
every peer's uid is checked (SO_PEERCRED). It never calls the cloud API (the client resolves
and pins the workers) and logs no command, output or stdin: only its own start and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpuctl.config import DEFAULT_PERSIST_S
from tpuctl.errors import TpuctlError, UsageError
from tpuctl.paths import private_dir
from tpuctl.workers import mux, muxproto
from tpuctl.workers.base import SshTarget
from tpuctl.workers.ssh import SshWorkers

_TICK = 1.0  # how often idle pools and the daemon's own idle time are checked (seconds)


@dataclass
class _Pool:
    workers: SshWorkers
    targets: list[SshTarget]
    policy: tuple[float, int]
    last_used: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, persist: float) -> None:
        self.persist = persist
        self.pools: dict[str, _Pool] = {}
        self.active = 0
        self.last_request = time.monotonic()
        self.stopping = asyncio.Event()

    # -- requests ------------------------------------------------------------------------------
    def _pool_for(self, req: dict[str, Any]) -> _Pool:
        """The node's pool, re-pointed when the client's (re-read) worker list differs."""
        targets = [mux.target_from_dict(t) for t in req["targets"]]
        policy = (float(req["connect_timeout"]), int(req["connect_attempts"]))
        key = f"{req['pool']}|{req['key_path']}"
        pool = self.pools.get(key)
        if pool is None:
            pool = _Pool(SshWorkers(targets, key_path=Path(req["key_path"]),
                                    connect_timeout=policy[0], connect_attempts=policy[1],
                                    max_concurrency=int(req.get("max_concurrency", 64))),
                         targets=targets, policy=policy)
            self.pools[key] = pool
        elif pool.targets != targets or pool.policy != policy:
            pool.workers.retarget(targets, connect_timeout=policy[0],
                                  connect_attempts=policy[1])
            pool.targets, pool.policy = targets, policy
        pool.last_used = time.monotonic()
        return pool

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer):
            writer.close()
            return
        self.active += 1
        try:
            await self._serve_one(reader, writer)
        except (OSError, ValueError, KeyError, TypeError, asyncio.IncompleteReadError):
            pass  # a client that left or sent garbage: nothing of ours to clean up
        finally:
            self.active -= 1
            self.last_request = time.monotonic()
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        req = json.loads(await reader.readline())
        if self.stopping.is_set():
            return  # no ack: the client runs the command in process
        if req.get("v") != mux.PROTOCOL:
            writer.write(mux.encode({"error": mux.error_to_dict(UsageError(
                "tpuctl's connection daemon speaks another protocol",
                hint="run `tpuctl mux stop`"))}))
            return
        op = req.get("op", "run")
        if op == "status":
            writer.write(mux.encode({"status": self.status()}))
            return
        if op == "stop":
            writer.write(mux.encode({"stopping": 1}))
            await writer.drain()
            self.stopping.set()
            return
        if time.time() - float(req.get("sent_at") or 0) > mux.STALE_REQUEST_S:
            return  # its client has given up waiting (and runs it itself): never run it too
        self.persist = max(self.persist, float(req.get("persist") or 0))
        try:
            pool = self._pool_for(req)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError("bad request") from exc
        writer.write(mux.ACK)

        def on_output(index: int, stream: str, line: str) -> None:
            writer.write(mux.encode({"o": [index, stream, line]}))

        stdin = base64.b64decode(req["stdin"]) if req.get("stdin") is not None else None
        run = asyncio.ensure_future(pool.workers.run(
            muxproto.request_command(req), indices=req.get("indices"), timeout=req.get("timeout"),
            stdin=stdin, on_output=on_output if req.get("stream") else None,
            capture=bool(req.get("capture")), drain=writer.drain))
        gone = asyncio.ensure_future(reader.read(1))  # the client closes its end on Ctrl-C
        try:
            await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not run.done():
                run.cancel()  # closes every worker's channel, as Ctrl-C does in process
                with contextlib.suppress(BaseException):
                    await run
                with contextlib.suppress(Exception):
                    writer.write(mux.encode({"cancelled": 1}))
                    await writer.drain()
            gone.cancel()
        if run.cancelled():
            return
        try:
            results = run.result()
        except TpuctlError as exc:
            writer.write(mux.encode({"error": mux.error_to_dict(exc)}))
        else:
            writer.write(mux.encode({"results": [muxproto.result_to_dict(r) for r in results]}))
        await writer.drain()
        pool.last_used = time.monotonic()

    def status(self) -> dict[str, Any]:
        """Counts and ages only: no node address, command or key material."""
        now = time.monotonic()
        return {"pid": os.getpid(), "persist_s": self.persist, "nodes": len(self.pools),
                "connections": sum(p.workers.open_connections() for p in self.pools.values()),
                "busy": self.active - 1, "idle_s": round(now - self.last_request, 1)}

    # -- lifetime ------------------------------------------------------------------------------
    async def reap(self) -> None:
        """Close pools unused for `persist`; stop when idle that long with nothing running."""
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), _TICK)
            now = time.monotonic()
            for key, pool in list(self.pools.items()):
                if now - pool.last_used > self.persist and self.active == 0:
                    del self.pools[key]
                    await pool.workers.close()
            if self.active == 0 and now - self.last_request > self.persist:
                self.stopping.set()

    async def close(self) -> None:
        pools, self.pools = list(self.pools.values()), {}
        await asyncio.gather(*(p.workers.close() for p in pools), return_exceptions=True)


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return True  # no peer credentials here: the 0700 directory and 0600 socket guard it
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt,
                                                              struct.calcsize("3i")))
    except OSError:
        return False
    return uid == os.getuid()


def _log(line: str) -> None:
    """Lifecycle only (never a command, output or secret): ~/.tpuctl/mux/mux.log, for
    troubleshooting."""
    with contextlib.suppress(OSError), open(mux.mux_dir() / "mux.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} {line}\n")


async def serve(persist: float) -> int:
    os.umask(0o077)
    d = mux.mux_dir()
    private_dir(d)
    path = mux.usable_socket_path()
    if path is None:
        return 2
    lock = open(path.with_suffix(".lock"), "a")  # held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another daemon serves this socket
    path.unlink(missing_ok=True)  # a dead daemon's socket: we hold the lock now
    daemon = Daemon(persist)
    server = await asyncio.start_unix_server(daemon.handle, path=str(path),
                                             limit=mux.FRAME_LIMIT)
    os.chmod(path, 0o600)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, daemon.stopping.set)
    (path.with_suffix(".pid")).write_text(f"{os.getpid()}\n")
    _log(f"started socket={path.name} persist={persist:g}s")
    reaper = asyncio.ensure_future(daemon.reap())
    try:
        await daemon.stopping.wait()
    finally:
        server.close()
        path.unlink(missing_ok=True)
        path.with_suffix(".pid").unlink(missing_ok=True)
        reaper.cancel()
        await daemon.close()
        _log("stopped")
        lock.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tpuctl.workers.muxd")
    parser.add_argument("--persist", type=float, default=DEFAULT_PERSIST_S,
                        help="seconds without a request before the daemon exits")
    args = parser.parse_args()
    return asyncio.run(serve(max(1.0, args.persist)))


if __name__ == "__main__":
    raise SystemExit(main())
