"""`top`'s frames: what top.sh prints turned into rows (rates, states, absent metrics, hostile
log lines), grouped for large nodes, and the frame loop on fake ports (an unreachable worker
is marked and asked again)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import fake_ports
from tpuctl.ops.top import TopRequest, top_node
from tpuctl.ops.topframe import clean_line, group, parse_worker, unreachable

RUNNING = """run run=r1 state=running started_at=2026-11-30T18:00:00Z heartbeat_age=1 \
exit_code=- ended_at=- stopped=0
host now=1796061700.5 ncpu=8 clk_tck=100 cpu_busy=500 cpu_total=1000 run_ticks=200 \
mem_total_kb=1048576 mem_avail_kb=262144 load1=3.50 load5=2 load15=1 cpu_pct=50.0 \
run_cpu_pct=180.0
tpu source=libtpu addr=localhost:8431 client=builtin chips=2
duty i=0 pct=91.50
duty i=1 pct=88.00
hbm i=0 used=1073741824 total=34359738368
hbm i=1 used=2147483648 total=34359738368
log step=41 loss=0.0308
"""


def test_a_running_workers_row() -> None:
    row, counters = parse_worker(3, RUNNING, None)
    assert (row.index, row.state, row.run_id) == (3, "running", "r1")
    assert row.run_age_s == pytest.approx(100.5)
    assert (row.host_cpu_pct, row.run_cpu_pct, row.load1) == (50.0, 180.0, 3.5)
    assert (row.mem_used, row.mem_total) == (768 * 2**20, 2**30)
    assert [c.duty_pct for c in row.chips] == [91.5, 88.0] and row.duty_min == 88.0
    assert row.hbm == (3 * 2**30, 64 * 2**30)
    assert row.last_line == "step=41 loss=0.0308" and row.tpu_source == "libtpu"
    assert counters is not None and counters.run_ticks == 200


def test_rates_come_from_two_rounds_of_counters() -> None:
    _, first = parse_worker(0, RUNNING, None)
    later = RUNNING.replace("now=1796061700.5", "now=1796061702.5").replace(
        "cpu_busy=500", "cpu_busy=650").replace("cpu_total=1000", "cpu_total=1200").replace(
        "run_ticks=200", "run_ticks=500")
    row, _ = parse_worker(0, later, first)
    assert row.host_cpu_pct == 75.0  # 150 of 200 ticks busy
    assert row.run_cpu_pct == 150.0  # 300 ticks of 1/100 s in 2 s


def test_states_as_status_says_them_and_absent_metrics_stay_absent() -> None:
    hung = RUNNING.replace("heartbeat_age=1 ", "heartbeat_age=45 ")
    assert parse_worker(0, hung, None)[0].state == "hung"
    failed = RUNNING.replace("state=running", "state=exited").replace("exit_code=-",
                                                                       "exit_code=3")
    assert parse_worker(0, failed, None)[0].state == "failed"
    stopped = failed.replace("stopped=0", "stopped=1")
    assert parse_worker(0, stopped, None)[0].state == "stopped"
    none = RUNNING.split("tpu ")[0] + \
        "tpu source=none addr=localhost:8431 reason=Connection refused (no workload)\nlog \n"
    row = parse_worker(0, none, None)[0]
    assert row.chips == () and row.duty_min is None and row.hbm is None
    assert row.tpu_reason == "Connection refused (no workload)"
    # numbers a worker garbles are absent, never guessed
    bad = RUNNING.replace("cpu_pct=50.0", "cpu_pct=lots").replace("pct=91.50", "pct=nan")
    row = parse_worker(0, bad, None)[0]
    assert row.host_cpu_pct is None and [c.duty_pct for c in row.chips] == [None, 88.0]


def test_a_worker_naming_a_bad_run_id_is_shown_as_such() -> None:
    row, counters = parse_worker(1, RUNNING.replace("run=r1", "run=../../x"), None)
    assert row.state == "invalid" and "../../x" in (row.error or "") and counters is None


def test_two_devices_per_chip_are_summed_per_chip() -> None:
    text = RUNNING.replace("hbm i=1 used", "hbm i=2 used=1 total=2\nhbm i=3 used=1 total=2\n"
                                           "hbm i=1 used")
    row = parse_worker(0, text, None)[0]
    assert [(c.hbm_used, c.hbm_total) for c in row.chips] == [
        (3 * 2**30, 64 * 2**30), (2, 4)]


def test_escape_sequences_and_controls_never_reach_the_terminal() -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m \x9b31m\x00bell\x07 \u202egnp.exe"
    assert clean_line(hostile) == "red bell gnp.exe"
    assert clean_line("x" * 500, 20) == "x" * 19 + "…"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_log_line_comes_out_printable(text: str) -> None:
    out = clean_line(text)
    assert out.isprintable() and "\x1b" not in out and len(out) <= 200


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_worker_output_is_a_row(text: str) -> None:
    row, _ = parse_worker(0, text, None)
    assert row.last_line.isprintable()
    assert all(0 <= (c.duty_pct or 0) <= 100 for c in row.chips)


def test_groups_show_each_groups_worst_values() -> None:
    rows = []
    for i in range(20):
        text = RUNNING.replace("pct=91.50", f"pct={90 - i}").replace("heartbeat_age=1 ",
                                                                       f"heartbeat_age={i} ")
        rows.append(parse_worker(i, text, None)[0])
    rows[5] = unreachable(5, "connection refused")
    groups = group(rows)
    assert [g.workers for g in groups] == [tuple(range(8)), tuple(range(8, 16)),
                                           tuple(range(16, 20))]
    first = groups[0]
    assert (first.state, first.worst, first.counts) == ("unreachable", 5,
                                                        {"running": 7, "unreachable": 1})
    assert first.duty_min == 88.0 - 0 or first.duty_min == min(88.0, 90 - 7)
    assert groups[1].heartbeat_max == 15 and groups[1].duty_min == min(88.0, 90 - 15)
    assert first.last_line == "connection refused" and first.label == "w0-7"


def test_top_once_marks_an_unreachable_worker_and_exits_255() -> None:
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n", accelerator="v6e-16", keyed=True)  # 4 workers
    fleet.top_output = {i: RUNNING for i in range(4)}
    fleet.unreachable = {2}
    frames = []
    result = top_node(ports, TopRequest("n", once=True), frames.append)
    (frame,) = frames
    assert [w.state for w in frame.workers] == ["running", "running", "unreachable",
                                                "running"]
    assert frame.unreachable == [2] and result.exit_code == 255
    assert frame.to_dict()["unreachable_workers"] == [2]


def test_top_asks_a_worker_that_stopped_answering_again(monkeypatch) -> None:
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n", accelerator="v4-16", keyed=True)
    fleet.top_output = {0: RUNNING, 1: RUNNING}
    fleet.unreachable = {1}
    seen: list = []

    def on_frame(f) -> None:
        seen.append([w.state for w in f.workers])
        if len(seen) == 1:
            fleet.unreachable = set()  # it comes back
        if len(seen) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C

    result = top_node(ports, TopRequest("n", interval=0.2), on_frame)
    assert seen == [["running", "unreachable"], ["running", "running"],
                    ["running", "running"]]
    assert result.interrupted and result.exit_code == 0 and result.frames == 3
    # a worker's first round measures its rates itself; later ones leave it to the client
    windows = {w: [a[2] for n, i, s, a in fleet.script_calls if s == "top" and i == w]
               for w in (0, 1)}
    assert windows == {0: ["500", "0", "0"], 1: ["500", "0"]}


def test_top_refuses_a_bad_interval() -> None:
    ports, cloud, _ = fake_ports()
    from tpuctl.errors import UsageError

    with pytest.raises(UsageError, match="interval"):
        top_node(ports, TopRequest("n", interval=0))
    assert cloud.calls == []


def test_the_view_draws_worker_text_as_text(monkeypatch) -> None:
    """Rich markup in a worker's log line is shown, never obeyed (no hyperlink escapes)."""
    from rich.console import Console

    from tpuctl.cli.render.top import _renderable

    ports, cloud, fleet = fake_ports()
    cloud.add_node("n", accelerator="v4-8", keyed=True)
    fleet.top_output = {0: RUNNING.replace("log step=41 loss=0.0308",
                                           "log [link=http://evil.example]click[/link]")}
    frames: list = []
    top_node(ports, TopRequest("n", once=True), frames.append)
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=250).print(_renderable(frames[0]))
    assert "[link=http://evil.example]click[/link]" in buf.getvalue()
    assert "\x1b]8;" not in buf.getvalue()
