"""One exit-code rule for every command that reports per worker, and JSON that says the
process's exit code as an integer (an unreachable worker: named, 255 unless a job failed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tpuctl.ops.launch import StopResult, WorkerStop
from tpuctl.ops.logs import FetchResult
from tpuctl.ops.outcome import fanout_exit_code
from tpuctl.ops.remote_exec import ExecResult
from tpuctl.ops.runs import RunStatus, TailResult, WorkerRunStatus
from tpuctl.ops.secrets import SecretsListing, SecretsResult
from tpuctl.workers.base import WorkerResult


def test_the_rule():
    assert fanout_exit_code([0, 0]) == 0
    assert fanout_exit_code([0, None, 7, 3]) == 7  # first non-zero, in worker order
    assert fanout_exit_code([0, 7], timed_out=True, unreachable=True) == 7
    assert fanout_exit_code([0], timed_out=True, unreachable=True) == 5
    assert fanout_exit_code([0, None], unreachable=True) == 255


def test_exec_uses_it():
    results = (WorkerResult(0, 0), WorkerResult(1, None, error="refused", unreached=True))
    assert ExecResult("n", results).exit_code == 255
    assert ExecResult("n", (*results, WorkerResult(2, 9))).exit_code == 9


def _w(i: int, state: str, code: int | None = None) -> WorkerRunStatus:
    return WorkerRunStatus(i, "r1" if state != "unreachable" else "-", state, exit_code=code,
                           error="refused" if state == "unreachable" else None)


def test_status_with_an_unreachable_worker():
    running = RunStatus("n", "READY", (_w(0, "running"), _w(1, "unreachable")))
    assert running.state == "running" and running.exit_code == 255
    assert running.unreachable == [1] and not running.finished
    done = RunStatus("n", "READY", (_w(0, "exited", 0), _w(1, "unreachable")))
    assert done.state == "succeeded" and done.finished and done.exit_code == 255
    failed = RunStatus("n", "READY", (_w(0, "unreachable"), _w(1, "exited", 7)))
    assert failed.state == "failed" and failed.exit_code == 7
    nobody = RunStatus("n", "READY", (_w(0, "unreachable"), _w(1, "unreachable")))
    assert nobody.state == "unreachable" and nobody.exit_code == 255


def test_status_of_no_run_exits_3_and_says_3():
    st_ = RunStatus("n", "READY", (_w(0, "missing"), _w(1, "missing")))
    assert st_.state == "none" and st_.exit_code == 3 and st_.to_dict()["exit_code"] == 3


STATES = st.sampled_from(["running", "exited", "dead", "missing", "unreachable", "hung"])


@given(st.lists(st.tuples(STATES, st.integers(0, 255)), min_size=1, max_size=8))
def test_status_json_carries_the_process_exit_code_as_an_int(workers):
    status = RunStatus("n", "READY", tuple(
        _w(i, s, c if s == "exited" else None) for i, (s, c) in enumerate(workers)))
    doc = status.to_dict()
    assert isinstance(doc["exit_code"], int) and doc["exit_code"] == status.exit_code
    if status.state == "none":
        assert status.exit_code == 3
    elif any(s == "unreachable" for s, _ in workers) and status.run_exit_code == 0:
        assert status.exit_code == 255


def test_tail_names_the_unreachable_and_keeps_the_job_code_first():
    ok = TailResult(exit_codes={0: 0, 1: None}, unreachable={1: "refused"})
    assert ok.finished and ok.exit_code == 255
    failed = TailResult(exit_codes={0: 3, 1: None}, unreachable={1: "refused"})
    assert failed.exit_code == 3 and failed.first_failed == 0
    assert TailResult(exit_codes={0: 0, 1: 0}).exit_code == 0


def test_stop_logs_and_secrets_documents():
    stop = StopResult("n", (WorkerStop(0, "r1", "terminated", 143),
                            WorkerStop(1, "-", "unreachable", error="refused")))
    doc = stop.to_dict()
    assert doc["exit_code"] == 255 and doc["run_id"] == "r1"
    assert [w["exit_code"] for w in doc["workers"]] == [143, None]  # ints, never "143"
    assert StopResult("n", (WorkerStop(0, "r1", "killed", 137),)).to_dict()["exit_code"] == 0
    from pathlib import Path

    fetched = FetchResult("r1", Path("/x"), (Path("/x/worker0.log"),), (1,), (1,))
    assert fetched.to_dict()["exit_code"] == 255
    assert fetched.to_dict()["unreachable_workers"] == [1]
    pushed = SecretsResult(("A",), 1, {1: "refused"})
    assert pushed.to_dict() == {"keys": ["A"], "workers": 1, "unreachable_workers": [1],
                                "exit_code": 255}
    listing = SecretsListing({0: ["A"]}, {1: "refused"}).to_dict()
    assert listing["exit_code"] == 255
    assert listing["workers"] == [{"worker": 0, "keys": ["A"], "error": None},
                                  {"worker": 1, "keys": None, "error": "refused"}]
