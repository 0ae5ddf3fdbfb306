"""Readiness and health of a server run (sglang-jax or any HTTP server on rank 0).

Ready = rank 0's log has the ready line, then rank 0's health URL answers 200 (probed with a
timeout that abandons the request but never harms a server that is still compiling), and the
run's process is alive on every worker (by its pgid, never by name). `/health` is not enough:
sglang-jax answers it 200 even with a dead peer, so the probe uses `/health_generate`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.errors import RemoteCommandError, TimeoutExpired
from tpuctl.ops.launch import stop_run
from tpuctl.ops.runs import RunStatus, run_status
from tpuctl.ops.session import SliceSession, parse_kv


@dataclass(frozen=True)
class ReadySpec:
    pattern: str  # rank 0's "ready" line (extended regex)
    port: int | None = None  # rank 0's HTTP port; None: no health probe
    health_path: str = "/health_generate"
    peer_pattern: str | None = None  # what ranks > 0 log once they are up
    probe_timeout: float = 10.0


@dataclass(frozen=True)
class ReadyResult:
    seconds: float
    url: str | None

    def to_dict(self) -> dict[str, object]:
        return {"ready": True, "seconds": round(self.seconds, 2), "url": self.url}


async def probe(session: SliceSession, run_id: str, spec: ReadySpec
                ) -> tuple[dict[int, bool], str]:
    """(per worker: its ready line seen, rank 0's health HTTP code as text)."""
    url = "-"
    if spec.port is not None:
        url = f"http://{session.slice.workers[0].ip}:{spec.port}{spec.health_path}"
    calls: dict[int, tuple[list[str], bytes | None]] = {}
    for i in session.indices:
        pattern = spec.pattern if i == 0 else (spec.peer_pattern or "-")
        calls[i] = ([run_id, str(i), pattern, url if i == 0 else "-",
                     str(int(spec.probe_timeout))], None)
    results = await session.script_each("probe", calls, capture=True,
                                        timeout=spec.probe_timeout + 60)
    seen: dict[int, bool] = {}
    code = "000"
    for r in results:
        kv = parse_kv(r.stdout)
        seen[r.index] = kv.get("log") == "1"
        if r.index == 0:
            code = kv.get("http", "000")
    return seen, code


async def _tails(session: SliceSession, run_id: str, indices: list[int], n: int = 5
                 ) -> dict[int, str]:
    if not indices:
        return {}
    results = await session.script_each(
        "follow", {i: ([run_id, str(i), "0", "0", str(n)], None) for i in indices},
        capture=True, timeout=60)
    return {r.index: r.stdout.strip() for r in results}


def _describe(tails: dict[int, str], why: dict[int, str]) -> str:
    parts = []
    for i in sorted(why):
        last = " | ".join(tails.get(i, "").splitlines()[-3:]) or "(no output)"
        parts.append(f"w{i} {why[i]}: {last}")
    return "; ".join(parts)


async def wait_ready(session: SliceSession, run_id: str, spec: ReadySpec, *, timeout: float,
                     poll: float = 2.0, on_state: Callable[[str], None] = lambda s: None
                     ) -> ReadyResult:
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        st: RunStatus = await run_status(session, run_id)
        gone = {w.index: f"{w.state}" + (f" (exit {w.exit_code})" if w.exit_code is not None
                                         else "")
                for w in st.workers if w.state in ("exited", "dead", "missing", "unreachable")}
        if gone:
            tails = await _tails(session, run_id, sorted(gone))
            await stop_run(session, run_id, grace=5)
            raise RemoteCommandError(
                f"the server did not come up: {_describe(tails, gone)}",
                hint=f"see the logs: `tpuctl tail {session.slice.name} {run_id} -n 50`; the "
                "run was stopped on every worker")
        seen, code = await probe(session, run_id, spec)
        peers_up = spec.peer_pattern is None or all(seen[i] for i in seen if i != 0)
        health_ok = spec.port is None or code == "200"
        if seen.get(0) and health_ok and peers_up:
            url = (f"http://{session.slice.workers[0].ip}:{spec.port}" if spec.port
                   else None)
            return ReadyResult(seconds=time.monotonic() - t0, url=url)
        waiting = []
        if spec.peer_pattern is not None:
            waiting += [f"w{i}" for i in sorted(seen) if i != 0 and not seen[i]]
        if not seen.get(0):
            waiting.append("w0 ready line")
        elif not health_ok:
            waiting.append(f"w0 health {code}")
        on_state("waiting for " + ", ".join(waiting))
        if time.monotonic() >= deadline:
            why: dict[int, str] = {}
            for i in sorted(seen):
                if i == 0 and not seen[i]:
                    why[i] = "never printed its ready line"
                elif i == 0 and not health_ok:
                    why[i] = f"health check answered {code}"
                elif i != 0 and spec.peer_pattern is not None and not seen[i]:
                    why[i] = "never came up"
            tails = await _tails(session, run_id, sorted(why))
            await stop_run(session, run_id, grace=5)
            never = [f"w{i}" for i in sorted(why) if i != 0] or ["w0"]
            raise TimeoutExpired(
                f"not ready after {timeout:.0f}s; not up: {', '.join(never)} — "
                + _describe(tails, why),
                hint="a rank that never starts makes rank 0 wait forever at 'Begins to "
                "synchronize'; check that worker's log, then `tpuctl up` again (the run was "
                "stopped)")
        await asyncio.sleep(poll)
