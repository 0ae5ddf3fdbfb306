"""Is a node idle (up, no run live), and since when: what `list` flags past `idle_warn` and
`gc --idle` deletes past its threshold.

The cost ledger knows the runs this machine started and saw end; the workers know every run
(`runs.sh`). `list` asks the workers only when the ledger cannot say (a run it saw start but
not end, or no run recorded at all) and the node is old enough to be flagged; `gc --idle`
always asks every worker, and keeps any node whose workers do not all answer. What the workers
report is written back to the ledger, so `cost` still counts it once the node is gone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tpuctl.model import Slice
from tpuctl.ops.ledgernotes import cloud_id, learn_runs
from tpuctl.ops.ports import Ports
from tpuctl.ops.runspans import RunSpan, iso_seconds, read_spans

Spans = dict[str, tuple[float, float | None]]  # run → (start, end or None)


@dataclass(frozen=True)
class Idleness:
    state: str  # busy, idle, unknown
    since: float | None = None  # idle since (unix seconds)
    run: str | None = None  # a live run, when busy
    how: str = ""  # ledger, workers, or why it is unknown

    def idle_for(self, now: float) -> float:
        return 0.0 if self.state != "idle" or self.since is None else max(0.0, now - self.since)

    def to_dict(self, now: float, warn: float | None = None) -> dict[str, object]:
        d: dict[str, object] = {"state": self.state, "since": self.since, "run": self.run,
                                "how": self.how, "idle_s": round(self.idle_for(now), 1)}
        if warn is not None:
            d["flagged"] = self.state == "idle" and self.idle_for(now) > warn
        return d


def node_start(sl: Slice, now: float) -> float:
    return iso_seconds(sl.create_time) or now


def ledger_spans(ports: Ports, sl: Slice, start: float) -> Spans:
    """The node's runs as the ledger has them (this incarnation's: started after it)."""
    me, project, zone = cloud_id(ports.cloud), ports.cloud.project, sl.zone or ports.cloud.zone
    out: dict[str, list[float | None]] = {}
    for e in sorted(ports.ledger.read(), key=lambda e: e.t):
        if (e.cloud, e.project, e.zone, e.node) != (me, project, zone, sl.name) or not e.run:
            continue
        span = out.setdefault(e.run, [None, None])
        if e.kind == "run_start" and span[0] is None:
            span[0] = e.t
        elif e.kind == "run_end" and span[1] is None:
            span[1] = e.t
    return {r: (s, e) for r, (s, e) in out.items() if s is not None and s >= start - 1}


def judge(start: float, spans: Spans) -> Idleness:
    live = sorted(r for r, (_, e) in spans.items() if e is None)
    if live:
        return Idleness("busy", run=live[0])
    ends = [e for _, e in spans.values() if e is not None]
    return Idleness("idle", since=max([start, *ends]))


def merged(ledger: Spans, workers: Sequence[RunSpan]) -> Spans:
    """The workers' word on every run they report; the ledger's on the rest (a dry run's
    workers report nothing, and must not make a live run look finished)."""
    out = dict(ledger)
    out.update({s.run: (s.start, s.end) for s in workers})
    return out


def assess(ports: Ports, nodes: Sequence[Slice], now: float, *, older_than: float,
           ask: str = "when-needed") -> dict[str, Idleness]:
    """Each READY node's idleness. `ask`: `when-needed` (the workers of nodes older than
    `older_than` whose ledger cannot decide, worker 0 only), `always` (every worker of every
    node older than `older_than`; no answer: unknown)."""
    verdicts: dict[str, Idleness] = {}
    ledgers: dict[str, Spans] = {}
    to_ask: list[Slice] = []
    for sl in nodes:
        if sl.state != "READY":
            continue
        start = node_start(sl, now)
        ledgers[sl.name] = ledger_spans(ports, sl, start)
        verdicts[sl.name] = replace(judge(start, ledgers[sl.name]), how="ledger")
        old = now - start > older_than
        undecided = not ledgers[sl.name] or verdicts[sl.name].state == "busy"
        if old and (ask == "always" or undecided):
            to_ask.append(sl)
    answers = read_spans(ports, to_ask, all_workers=ask == "always")
    for sl in to_ask:
        got = answers.get(sl.name, "not asked")
        if isinstance(got, str):
            if ask == "always":
                verdicts[sl.name] = Idleness("unknown", how=f"workers did not answer: {got}")
            continue
        learn_runs(ports, sl, ((s.run, s.start, s.end) for s in got))
        verdicts[sl.name] = replace(judge(node_start(sl, now), merged(ledgers[sl.name], got)),
                                    how="workers")
    return verdicts
