"""The arithmetic of `tpuctl cost`: lives split into running, idle and lost time, priced,
by task and by day, adding up."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.ledger import LedgerEvent
from tpuctl.model import Slice
from tpuctl.ops.costing import Attempt, attempts, rows, split, total

H = 3600.0
T0 = dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.timezone.utc).timestamp()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


def ev(kind: str, t: float, node: str = "a", created: float | None = T0, run: str = "",
       price: float | None = None, zone: str = "us-east5-b") -> LedgerEvent:
    return LedgerEvent(kind=kind, t=t, cloud="gcp", project="p", zone=zone, node=node,
                       created="" if created is None else _iso(created),
                       accelerator_type="v6e-8", price=price,
                       currency="USD" if price is not None else "", run=run)


def no_price(atype: str, zone: str, spot: bool) -> tuple[float | None, str]:
    return None, "USD"


def test_overlapping_runs_count_once_and_the_rest_is_idle() -> None:
    a = Attempt("z", "a", "", start=0, end=10 * H, price=2.0,
                runs=(("r1", 1 * H, 3 * H), ("r2", 2 * H, 4 * H), ("r3", 8 * H, None)))
    assert split(a, now=99 * H, lo=0, hi=99 * H) == (5 * H, 5 * H, 0.0)  # r3 ends with it


def test_a_preempted_attempts_run_time_is_lost() -> None:
    a = Attempt("z", "a", "", start=0, end=4 * H, preempted=True, runs=(("r", H, None),))
    assert split(a, now=10 * H, lo=0, hi=10 * H) == (0.0, 1 * H, 3 * H)


def test_a_live_attempt_counts_to_now_and_the_window_clips() -> None:
    a = Attempt("z", "a", "", start=0, end=None, runs=(("r", 2 * H, None),))
    assert split(a, now=5 * H, lo=0, hi=5 * H) == (3 * H, 2 * H, 0.0)
    assert split(a, now=5 * H, lo=4 * H, hi=5 * H) == (1 * H, 0.0, 0.0)
    assert split(a, now=5 * H, lo=6 * H, hi=7 * H) == (0.0, 0.0, 0.0)


def test_attempts_from_the_ledger_and_the_api() -> None:
    gone_created, live_created = T0, T0 + 10 * H
    events = [ev("create", T0, price=21.6), ev("run_start", T0 + H, run="r1"),
              ev("run_end", T0 + 2 * H, run="r1"), ev("run_start", T0 + 3 * H, run="r2"),
              ev("preempted", T0 + 4 * H, price=21.6),
              # the same task again: a new attempt (another createTime)
              ev("create", live_created, created=live_created, price=21.6),
              ev("run_start", live_created + H, created=None, run="r3")]
    live = [Slice("a", "p", "us-east5-b", "v6e-8", "rt", "READY",
                  create_time=_iso(live_created))]
    now = live_created + 3 * H
    found = attempts(events, live, now, ["us-east5-b"], no_price)
    assert [(a.start, a.end, a.preempted) for a in found] == [
        (gone_created, T0 + 4 * H, True), (live_created, None, False)]
    assert [r[0] for r in found[0].runs] == ["r1", "r2"] and found[1].runs[0][0] == "r3"
    (row,) = rows(found, now, 0, now, "task")
    assert row.running_s == 2 * H and row.lost_s == 2 * H  # r1 and r2 on the preempted one
    assert row.idle_s == 2 * H + 1 * H  # before r1 and between runs; before r3
    assert row.total_cost == pytest.approx(21.6 * 7)
    assert row.attempts == 2 and row.up


def test_a_node_gone_without_a_record_ends_at_its_last_event() -> None:
    events = [ev("create", T0, price=1.0), ev("run_start", T0 + H, run="r", created=None),
              ev("run_end", T0 + 2 * H, run="r", created=None)]
    (a,) = attempts(events, [], T0 + 9 * H, ["us-east5-b"], no_price)
    assert a.end == T0 + 2 * H and not a.end_known
    # its zone not listed (the API did not answer): counted to now, unknown end
    (b,) = attempts(events, [], T0 + 9 * H, [], no_price)
    assert b.end is None and not b.end_known


def test_a_preempted_node_the_api_lists_ends_now_as_lost() -> None:
    live = [Slice("a", "p", "us-east5-b", "v6e-8", "rt", "PREEMPTED", create_time=_iso(T0))]
    (a,) = attempts([ev("run_start", T0, run="r", created=None)], live, T0 + H,
                    ["us-east5-b"], lambda *_: (8.0, "USD"))
    assert a.preempted and a.end == T0 + H and a.price == 8.0


def test_unknown_prices_are_counted_as_time_not_money() -> None:
    a = Attempt("z", "a", "", start=0, end=2 * H, price=None)
    (row,) = rows([a], 2 * H, 0, 2 * H, "task")
    assert row.unpriced_s == 2 * H and row.total_cost == 0.0


def test_by_day_splits_at_utc_midnight_and_adds_up_to_by_task() -> None:
    midnight = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp()
    a = Attempt("z", "a", "", start=midnight - 2 * H, end=midnight + 3 * H, price=10.0,
                runs=(("r", midnight - H, midnight + H),))
    days = rows([a], midnight + 5 * H, 0, midnight + 5 * H, "day")
    assert [d.key for d in days] == ["2026-11-30", "2026-12-01"]
    assert [(d.running_s, d.idle_s) for d in days] == [(H, H), (H, 2 * H)]
    by_task = total(rows([a], midnight + 5 * H, 0, midnight + 5 * H, "task"))
    assert total(days).total_cost == pytest.approx(by_task.total_cost) == pytest.approx(50.0)


runs_st = st.lists(st.tuples(st.floats(0, 100), st.floats(0, 50) | st.none()), max_size=6)


@settings(max_examples=300, deadline=None)
@given(start=st.floats(0, 50), length=st.floats(0, 100) | st.none(), runs=runs_st,
       preempted=st.booleans(), lo=st.floats(0, 200), width=st.floats(0, 200))
def test_running_idle_and_lost_always_add_up_to_the_life_in_the_window(
        start: float, length: float | None, runs: list, preempted: bool, lo: float,
        width: float) -> None:
    now = 200.0
    end = None if length is None else start + length
    spans = tuple((f"r{i}", s, None if d is None else s + d) for i, (s, d) in enumerate(runs))
    a = Attempt("z", "a", "", start=start, end=end, preempted=preempted, runs=spans,
                price=3.0)
    running, idle, lost = split(a, now, lo, lo + width)
    life = max(0.0, min(a.life_end(now), lo + width) - max(start, lo))
    assert min(running, idle, lost) >= 0
    assert running + idle + lost == pytest.approx(life, abs=1e-6)
    assert (running if preempted else lost) == 0.0
    (row,) = rows([a], now, 0, now, "task") or [None]  # type: ignore[misc]
    if row is not None:
        assert row.total_cost == pytest.approx(3.0 * row.total_s / 3600)
