"""The results of the short per-worker commands (exec, status, stop) and how worker output
reads: shared by the full CLI's operations and the fast path (tpuctl/cli/fast/), so both
compute the same states, exit codes and JSON documents from the same worker answers. Light on
purpose: no dataclasses (records, tpuctl/record.py), asyncio or pathlib."""

from __future__ import annotations

from tpuctl.errors import ExitCode, NotFoundError, RemoteCommandError
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from tpuctl.workers.records import WorkerResult

GONE_STATES = ("PREEMPTED", "TERMINATED")  # the VMs, their disks and every run are gone
HEARTBEAT_STALE_S = 30  # the supervisor beats every 2 s; 30 s of silence means it is stuck


def is_unreachable(r: WorkerResult) -> bool:
    """The command could not be run or finished there (no connection, or it was lost), as
    opposed to a command that ran and failed, or timed out."""
    return r.exit_code is None and not r.timed_out


def parse_kv(text: str) -> dict[str, str]:
    """The worker scripts' output protocol: whitespace-separated key=value words."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def worker_run_id(index: int, value: str | None) -> str:
    """A run id as a worker reported it ("-": none), checked: tpuctl uses it in local paths
    and in arguments, and a worker (or its runs/latest) may say anything."""
    from tpuctl import validate

    if value in (None, "", "-"):
        return "-"
    assert value is not None
    try:
        return validate.run_id(value)
    except ValueError:
        raise RemoteCommandError(f"w{index} answered an invalid run id {value[:80]!r}",
                                 hint="refusing to use it (run ids are letters, digits, '.', '_' "
                                 "and '-'); look at ~/.tpuctl/runs/latest on that worker: "
                                 f"`tpuctl ssh NAME --worker {index}`") from None


@record
class ExecResult:
    node: str
    results: tuple[WorkerResult, ...]

    @property
    def exit_code(self) -> int:
        """The first non-zero worker exit code in worker order; 5 timeout; 255 unreachable."""
        return fanout_exit_code((r.exit_code for r in self.results),
                                timed_out=any(r.timed_out for r in self.results),
                                unreachable=any(r.exit_code is None for r in self.results))

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "exit_code": self.exit_code,
            "workers": [
                {"worker": r.index, "exit_code": r.exit_code, "error": r.error,
                 "timed_out": r.timed_out, "seconds": round(r.duration, 3)}
                for r in self.results
            ],
        }


@record
class WorkerRunStatus:
    index: int
    run_id: str
    state: str  # running, exited, dead, hung, missing, unreachable
    exit_code: int | None = None
    heartbeat_age: int | None = None
    pid: int | None = None
    log_lines: int = 0
    stopped: bool = False
    serve_url: str | None = None
    timed_out: bool = False
    started_at: str | None = None
    error: str | None = None  # why an unreachable worker could not be asked
    ended_at: float | None = None  # unix time the job ended (or its last heartbeat, if dead)

    def to_dict(self) -> dict[str, object]:
        return {"worker": self.index, "run_id": self.run_id, "state": self.state,
                "exit_code": self.exit_code, "heartbeat_age": self.heartbeat_age,
                "pid": self.pid, "log_lines": self.log_lines, "stopped": self.stopped,
                "error": self.error}


@record
class RunStatus:
    node: str
    node_state: str
    workers: tuple[WorkerRunStatus, ...]
    health_code: str | None = None  # rank 0's /health_generate answer, for server runs

    @property
    def serve_url(self) -> str | None:
        return self.workers[0].serve_url if self.workers else None

    @property
    def serve_state(self) -> str | None:
        """serving, degraded (a rank gone or generation failing) or down (rank 0 gone)."""
        if self.serve_url is None:
            return None
        if self.node_state in GONE_STATES or self.workers[0].state != "running":
            return "down"
        if any(w.state != "running" for w in self.workers) or self.health_code != "200":
            return "degraded"
        return "serving"

    @property
    def degraded_workers(self) -> list[int]:
        bad = [w.index for w in self.workers if w.state != "running"]
        if not bad and self.health_code not in (None, "200"):
            bad = [0]
        return bad

    @property
    def first_down(self) -> int | None:
        """The rank that went down first: when a peer dies, the real sglang-jax rank 0 may
        take itself down moments later, and then this names the cause."""
        ended = [(w.ended_at, w.index) for w in self.workers
                 if w.state in ("exited", "dead") and w.ended_at is not None]
        return min(ended)[1] if ended else None

    @property
    def run_id(self) -> str:
        ids = {w.run_id for w in self.workers if w.run_id not in ("", "-")}
        return ids.pop() if len(ids) == 1 else ",".join(sorted(ids)) or "-"

    @property
    def unreachable(self) -> list[int]:
        return [w.index for w in self.workers if w.state == "unreachable"]

    @property
    def state(self) -> str:
        """The run's state as the workers that answered tell it (unreachable ones are named
        per worker, and in the exit code)."""
        if self.node_state in GONE_STATES:
            return "preempted"
        answered = [w for w in self.workers if w.state != "unreachable"]
        states = {w.state for w in answered}
        if not states:
            return "unreachable"
        if states == {"missing"}:
            return "none"
        if "running" in states or "hung" in states:
            failed = any(w.state in ("exited", "dead") and w.exit_code != 0 for w in answered)
            return "failing" if failed else ("hung" if "hung" in states else "running")
        if any(w.timed_out for w in answered):
            return "timed-out"
        stopped = any(w.stopped for w in answered)
        if self.run_exit_code == 0:
            return "stopped" if stopped else "succeeded"
        return "stopped" if stopped else "failed"

    @property
    def run_exit_code(self) -> int:
        """The run's code: the first non-zero worker exit code in worker order (1 for a
        dead worker, or one where the run is missing)."""
        return fanout_exit_code(1 if w.state in ("dead", "missing") else w.exit_code
                                for w in self.workers if w.state != "unreachable")

    @property
    def exit_code(self) -> int:
        """What `status` exits with: 3 when there is no run; else the run's code so far
        (0 while it runs; the first failed worker's code once one failed); 1 for a server
        that is degraded or down; 255 when a worker could not be reached and nothing failed."""
        if self.state == "none":
            return int(ExitCode.NOT_FOUND)
        code = self.run_exit_code
        if code == 0 and self.serve_state in ("degraded", "down"):
            code = int(ExitCode.FAILED)
        return fanout_exit_code([code], unreachable=bool(self.unreachable))

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "node": self.node, "node_state": self.node_state, "run_id": self.run_id,
            "state": self.state, "exit_code": self.exit_code,
            "workers": [w.to_dict() for w in self.workers]}
        if self.serve_url is not None:
            d.update(serve=self.serve_state, serve_url=self.serve_url,
                     health=self.health_code, degraded_workers=self.degraded_workers,
                     first_down=self.first_down)
        return d

    @property
    def finished(self) -> bool:
        return all(w.state in ("exited", "dead", "missing", "unreachable") for w in self.workers)


def int_or_none(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "-") else None
    except ValueError:
        return None


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "-") else None
    except ValueError:
        return None


def parse_status_line(index: int, line: str) -> WorkerRunStatus:
    kv = parse_kv(line)
    state = kv.get("state", "missing")
    age = int_or_none(kv.get("heartbeat_age"))
    if state == "running" and age is not None and age > HEARTBEAT_STALE_S:
        state = "hung"
    serve = kv.get("serve_url", "-")
    started = kv.get("started_at", "-")
    return WorkerRunStatus(index=index, run_id=worker_run_id(index, kv.get("run")), state=state,
                           exit_code=int_or_none(kv.get("exit_code")), heartbeat_age=age,
                           pid=int_or_none(kv.get("pid")),
                           log_lines=int_or_none(kv.get("log_lines")) or 0,
                           stopped=kv.get("stopped") == "1",
                           timed_out=kv.get("timed_out") == "1",
                           ended_at=_float(kv.get("ended_at")),
                           serve_url=None if serve in ("", "-") else serve,
                           started_at=None if started in ("", "-") else started)


@record
class WorkerStop:
    index: int
    run_id: str
    result: str  # terminated, killed, not-running, missing, unreachable
    exit_code: int | None = None  # the run's recorded code on that worker (143/137 if stopped)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"worker": self.index, "run_id": self.run_id, "result": self.result,
                "exit_code": self.exit_code, "error": self.error}


@record
class StopResult:
    node: str
    workers: tuple[WorkerStop, ...]

    @property
    def run_id(self) -> str:
        ids = {w.run_id for w in self.workers if w.run_id not in ("", "-")}
        return ",".join(sorted(ids)) or "-"

    @property
    def exit_code(self) -> int:
        """0, or 255 when a worker could not be reached (the others were stopped)."""
        return fanout_exit_code([], unreachable=any(w.result == "unreachable"
                                                    for w in self.workers))

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "run_id": self.run_id, "exit_code": self.exit_code,
                "workers": [w.to_dict() for w in self.workers]}


def stop_result(node: str, run_id: str | None, results: Sequence[WorkerResult]) -> StopResult:
    """What stop.sh answered on each worker (its failures already raised, unreachable workers
    named as such); NotFoundError when no worker that answered has the run."""
    workers = []
    for r in results:
        if is_unreachable(r):
            workers.append(WorkerStop(r.index, run_id or "-", "unreachable", error=r.error))
            continue
        kv = parse_kv(r.stdout)
        code = kv.get("exit_code", "-")
        workers.append(WorkerStop(r.index, worker_run_id(r.index, kv.get("run")),
                                  kv.get("result", "?"), int(code) if code.isdigit() else None))
    answered = [w for w in workers if w.result != "unreachable"]
    if answered and all(w.result == "missing" for w in answered):
        raise NotFoundError(f"no run {run_id or '(latest)'} on {node}",
                            hint=f"`tpuctl runs {node}` lists the node's runs")
    return StopResult(node, tuple(workers))
