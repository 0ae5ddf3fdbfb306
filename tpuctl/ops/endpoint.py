"""`forward` and `generate`: reach a server on rank 0 through SSH, from this machine.

The destination is worker 0's own address (a server bound to 0.0.0.0 answers there too, and
on the emulator each rank binds its own loopback address).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tpuctl.errors import RemoteCommandError, TimeoutExpired, UsageError
from tpuctl.model import DEFAULT_SERVE_PORT
from tpuctl.ops.session import SliceSession
from tpuctl.workers.base import Listener

if TYPE_CHECKING:
    from tpuctl.ops.ports import Ports

DEFAULT_PORT = DEFAULT_SERVE_PORT


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid {what} {port}", hint="use a TCP port number 1-65535")


async def open_forward(session: SliceSession, *, port: int = DEFAULT_PORT,
                       local_port: int = 0) -> tuple[Listener, int]:
    """(listener, local port): 127.0.0.1:local_port here → worker 0's address:port there."""
    _check_port(port, "--port")
    _check_port(local_port, "--local-port")
    dest = session.slice.workers[0].ip
    try:
        listener = await session.pool.forward_local(0, local_port, dest, port)
    except OSError as e:
        raise UsageError(f"cannot listen on 127.0.0.1:{local_port} ({e.strerror or e})",
                         hint="pick another --local-port (0 picks a free one)") from None
    return listener, int(listener.get_port())


@dataclass(frozen=True)
class GenerateResult:
    text: str
    latency: float
    status: int
    raw: dict[str, Any]

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "latency_s": round(self.latency, 3), "status": self.status,
                "meta_info": self.raw.get("meta_info")}


async def generate(session: SliceSession, prompt: str, *, port: int = DEFAULT_PORT,
                   max_new_tokens: int = 32, temperature: float = 0.0,
                   timeout: float = 120.0) -> GenerateResult:
    """One `/generate` request (sglang's native API) to rank 0, timed end to end."""
    if max_new_tokens <= 0:
        raise UsageError(f"invalid --max-tokens {max_new_tokens}", hint="use 1 or more")
    listener, local = await open_forward(session, port=port)
    body = {"text": prompt,
            "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": temperature}}
    t0 = time.monotonic()
    try:
        reply = await session.ports.http.post_json(f"http://127.0.0.1:{local}/generate", body,
                                                   timeout=timeout)
    except TimeoutError:
        raise TimeoutExpired(f"no answer from the server within {timeout:.0f}s",
                             hint="check `tpuctl status NAME` (a dead rank makes generation "
                             "hang) and the logs with `tpuctl tail NAME`") from None
    except ConnectionError as e:
        raise RemoteCommandError(f"the server on w0 port {port} did not answer ({e})",
                                 hint="is it running and ready? `tpuctl status NAME`") from None
    finally:
        listener.close()
    text, status = reply.text, reply.status
    latency = time.monotonic() - t0
    try:
        raw = json.loads(text)
    except ValueError:
        raw = {"text": text}
    if status != 200:
        raise RemoteCommandError(f"the server answered HTTP {status}: {text.strip()[:200]}",
                                 hint="see the server's log: `tpuctl tail NAME -n 50`")
    out = raw.get("text") if isinstance(raw, dict) else None
    if isinstance(raw, list) and raw:
        out = raw[0].get("text")
    return GenerateResult(text=str(out if out is not None else text), latency=latency,
                          status=status, raw=raw if isinstance(raw, dict) else {"items": raw})


@dataclass(frozen=True)
class ForwardRequest:
    name: str
    port: int = DEFAULT_PORT  # the server's port on worker 0
    local_port: int | None = None  # default: the same as `port`; 0 picks a free one


@dataclass(frozen=True)
class Forwarding:
    url: str  # here: http://127.0.0.1:LOCAL
    destination: str  # on the slice: worker 0's address and the server's port


def forward(ports: Ports, req: ForwardRequest, on_open: Callable[[Forwarding], None]) -> None:
    """The `forward` command: until Ctrl-C (KeyboardInterrupt, after the tunnel closed)."""
    from tpuctl.ops.session import on_slice

    async def go(session: SliceSession) -> None:
        local = req.port if req.local_port is None else req.local_port
        listener, bound = await open_forward(session, port=req.port, local_port=local)
        on_open(Forwarding(f"http://127.0.0.1:{bound}",
                           f"{session.slice.workers[0].ip}:{req.port}"))
        try:
            await asyncio.Event().wait()
        finally:
            listener.close()

    on_slice(ports, req.name, go)


@dataclass(frozen=True)
class GenerateRequest:
    name: str
    prompt: str
    port: int = DEFAULT_PORT
    max_tokens: int = 32
    temperature: float = 0.0
    timeout: float = 120.0


def generate_node(ports: Ports, req: GenerateRequest) -> GenerateResult:
    """The `generate` command."""
    from tpuctl.ops.session import on_slice

    return on_slice(ports, req.name, lambda s: generate(
        s, req.prompt, port=req.port, max_new_tokens=req.max_tokens,
        temperature=req.temperature, timeout=req.timeout))
