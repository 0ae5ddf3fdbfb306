"""When runs were live on a node, as its workers know it (`runs.sh`: started_at, ended_at):
what `list` (idle nodes), `gc --idle` and `cost` read when the ledger cannot say.

Reading is side-effect free for the node: only nodes whose metadata already authorizes this
user's key are asked (no key is added, no key made), each within a short timeout; a node that
does not answer is reported as such, never guessed idle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tpuctl.model import Slice
from tpuctl.ops.ports import Ports
from tpuctl.ops.session import SliceSession, is_unreachable, open_session, parse_kv

BUSY_STATES = ("running", "hung")  # hung: alive with a stale heartbeat, still holding the node


@dataclass(frozen=True)
class RunSpan:
    run: str
    start: float  # unix seconds
    end: float | None  # None: still live on some worker


def iso_seconds(text: str | None) -> float | None:
    """`2026-11-30T18:00:00Z` (or with an offset) → unix seconds; None for anything else."""
    if not text or text == "-":
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def merge_spans(per_worker: Sequence[str]) -> list[RunSpan]:
    """One span per run over every worker's `runs.sh` lines: it started with the first
    worker and ended with the last (live while any worker runs it)."""
    starts: dict[str, float] = {}
    ends: dict[str, float | None] = {}
    for text in per_worker:
        for line in text.splitlines():
            kv = parse_kv(line)
            run, start = kv.get("run", ""), iso_seconds(kv.get("started_at"))
            if not run or start is None:
                continue
            starts[run] = min(start, starts.get(run, start))
            if kv.get("state") in BUSY_STATES:
                ends[run] = None
                continue
            try:
                end = float(kv.get("ended_at", "-"))
            except ValueError:
                end = start
            if run in ends and ends[run] is None:
                continue  # live on another worker
            ends[run] = max(end, ends.get(run) or end)
    return sorted((RunSpan(r, s, ends.get(r)) for r, s in starts.items()),
                  key=lambda s: (s.start, s.run))


async def session_spans(session: SliceSession, indices: Sequence[int] | None = None,
                        timeout: float = 20.0) -> list[RunSpan]:
    """The node's runs from the chosen workers (all by default); RuntimeError when one of
    them did not answer (its runs may be missing: nothing here is guessed)."""
    results = await session.script("runs", indices=indices, capture=True, timeout=timeout)
    bad = [r for r in results if not r.ok]
    if bad:
        r = bad[0]
        why = r.error or f"runs.sh exit {r.exit_code}"
        raise RuntimeError(f"w{r.index} {'unreachable' if is_unreachable(r) else why}: {why}")
    return merge_spans([r.stdout for r in results])


def authorizes_us(ports: Ports, sl: Slice) -> bool:
    """The node already lets this user in (its ssh-keys hold our key): asking it changes
    nothing."""
    from tpuctl import sshkeys
    from tpuctl.ops.access import SSH_KEYS

    pub = ports.local.public_key()
    if pub is None or sl.state != "READY" or not sl.workers:
        return False
    entry = sshkeys.ssh_keys_entry(ports.local.username(), pub)
    return sshkeys.merge_ssh_keys(sl.metadata.get(SSH_KEYS, ""), entry) == \
        sl.metadata.get(SSH_KEYS, "")


def read_spans(ports: Ports, nodes: Sequence[Slice], *, all_workers: bool = False,
               timeout: float = 20.0) -> dict[str, list[RunSpan] | str]:
    """Each node's runs (worker 0's, or every worker's), or why they could not be read."""
    if not nodes:
        return {}

    async def one(sl: Slice) -> list[RunSpan] | str:
        if not authorizes_us(ports, sl):
            return "not asked: the node does not authorize your key"
        session = None
        try:
            session = await asyncio.to_thread(open_session, ports, sl.name)
            indices = None if all_workers else [session.indices[0]]
            return await asyncio.wait_for(session_spans(session, indices, timeout),
                                          timeout + 5)
        except Exception as e:  # any failure is this node's answer, never the command's
            return f"{type(e).__name__}: {e}"[:200]
        finally:
            if session is not None:
                await session.close()

    async def main() -> list[list[RunSpan] | str]:
        return list(await asyncio.gather(*(one(sl) for sl in nodes)))

    return dict(zip((sl.name for sl in nodes), asyncio.run(main()), strict=True))
