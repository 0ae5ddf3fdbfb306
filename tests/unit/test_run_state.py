"""How a run's state, exit code and serving state are derived from what each worker's
status.sh says (`ops/runs.py`), without a worker."""

from __future__ import annotations

import pytest

from tpuctl.ops.runs import RunStatus, WorkerRunStatus, parse_status_line


def _w(i: int, state: str, code: int | None = None, *, stopped: bool = False,
       timed_out: bool = False, serve: str | None = None) -> WorkerRunStatus:
    return WorkerRunStatus(i, "r1", state, exit_code=code, stopped=stopped,
                           timed_out=timed_out, serve_url=serve)


@pytest.mark.parametrize(("workers", "state", "exit_code"), [
    ([_w(0, "running"), _w(1, "running")], "running", 0),
    ([_w(0, "running"), _w(1, "hung")], "hung", 0),
    ([_w(0, "running"), _w(1, "exited", 3)], "failing", 3),
    ([_w(0, "running"), _w(1, "dead")], "failing", 1),
    ([_w(0, "exited", 0), _w(1, "exited", 0)], "succeeded", 0),
    ([_w(0, "exited", 0), _w(1, "exited", 9), _w(2, "exited", 4)], "failed", 9),
    ([_w(0, "exited", 143, stopped=True), _w(1, "exited", 143)], "stopped", 143),
    ([_w(0, "exited", 0, stopped=True)], "stopped", 0),
    ([_w(0, "exited", 143, timed_out=True)], "timed-out", 143),
    ([_w(0, "missing"), _w(1, "missing")], "none", 3),
    ([_w(0, "exited", 0), _w(1, "missing")], "failed", 1),
])
def test_the_run_state_and_exit_code(workers, state, exit_code):
    st = RunStatus("n", "READY", tuple(workers))
    assert (st.state, st.exit_code) == (state, exit_code)
    assert st.finished == all(w.state in ("exited", "dead", "missing") for w in workers)


def test_a_preempted_node_says_preempted_whatever_the_workers_said():
    st = RunStatus("n", "PREEMPTED", (_w(0, "running"),))
    assert st.state == "preempted"


URL = "http://10.0.0.2:30000"


@pytest.mark.parametrize(("workers", "health", "serve", "degraded", "exit_code"), [
    ([_w(0, "running", serve=URL), _w(1, "running")], "200", "serving", [], 0),
    ([_w(0, "running", serve=URL), _w(1, "dead")], "200", "degraded", [1], 1),
    ([_w(0, "running", serve=URL), _w(1, "running")], "503", "degraded", [0], 1),
    ([_w(0, "exited", 1, serve=URL), _w(1, "running")], None, "down", [0], 1),
])
def test_a_server_run_is_serving_degraded_or_down(workers, health, serve, degraded, exit_code):
    st = RunStatus("n", "READY", tuple(workers), health_code=health)
    assert (st.serve_state, st.degraded_workers, st.exit_code) == (serve, degraded, exit_code)
    assert st.to_dict()["serve"] == serve


def test_a_job_run_has_no_serving_state():
    st = RunStatus("n", "READY", (_w(0, "running"),))
    assert st.serve_state is None and "serve" not in st.to_dict()


@pytest.mark.parametrize(("line", "state"), [
    ("run=r1 state=running heartbeat_age=3 pid=10 log_lines=4", "running"),
    ("run=r1 state=running heartbeat_age=31 pid=10 log_lines=4", "hung"),
    ("run=r1 state=exited exit_code=0", "exited"),
    ("run=- state=missing", "missing"),
    ("", "missing"),
])
def test_a_worker_s_status_line(line, state):
    w = parse_status_line(2, line)
    assert w.index == 2 and w.state == state
