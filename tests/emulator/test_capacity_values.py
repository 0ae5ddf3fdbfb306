"""The capacity checks as pure functions: durations and timestamps as protobuf JSON reads them,
the queueing policy's window, and hostile input to every check of a capacity or disk field
(an ApiError naming the field, never a crash)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.emulator import capacity, disks
from tpuctl.emulator.errors import ApiError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)


@pytest.mark.parametrize("text,seconds", [("0s", 0.0), ("90s", 90.0), ("1.5s", 1.5),
                                          ("0.000000001s", 1e-9), ("3600s", 3600.0)])
def test_durations(text: str, seconds: float) -> None:
    assert capacity.duration(text, "d") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1h", "-1s", "1.5", "s", " 1s", "1.0000000001s", 5])
def test_bad_durations_name_the_field(text: Any) -> None:
    with pytest.raises(ApiError, match="queueing_policy.valid_until_duration"):
        capacity.duration(text, "queueing_policy.valid_until_duration")


def test_timestamps_and_windows() -> None:
    assert capacity.timestamp("1970-01-01T00:01:00Z", "t") == 60
    assert capacity.timestamp("1970-01-01T01:00:00.5+01:00", "t") == 0.5
    w = capacity.queueing_policy({"validAfterDuration": "10s"}, created=100.0)
    assert (w.after, w.until, w.waiting(105), w.waiting(110), w.expired(10**9)) == (
        110.0, None, True, False, False)
    w = capacity.queueing_policy({"validInterval": {"endTime": "1970-01-01T00:02:00Z"}}, 0)
    assert (w.after, w.until, w.expired(119.9), w.expired(120)) == (None, 120, False, True)
    assert capacity.queueing_policy(None, 0) == capacity.Window()


def test_capacity_types() -> None:
    assert capacity.capacity_type(capacity.scheduling_config(None)) == "on-demand"
    assert capacity.capacity_type(capacity.scheduling_config({"reserved": True})) == "reserved"
    assert capacity.tier({"guaranteed": {"minDuration": "60s"}}) == "guaranteed"
    assert capacity.tier({"tpu": {}}) is None
    ref = capacity.reservation_name("projects/p/locations/z-a/reservations/-", "z-a")
    assert ref is not None and (ref.project, ref.reservation) == ("p", "-")


@settings(max_examples=150, deadline=None)
@given(value=JSON)
def test_hostile_capacity_fields_answer_invalid_argument(value: Any) -> None:
    checks = [
        lambda: capacity.scheduling_config(value),
        lambda: capacity.queueing_policy(value, 0.0),
        lambda: capacity.tier({"spot": value}),
        lambda: capacity.tier({"guaranteed": value}),
        lambda: capacity.reservation_name(value, "local-a"),
        lambda: disks.data_disks(value, "local-a", 1),
        lambda: disks.data_disks([value], "local-a", 4),
        lambda: capacity.timestamp(value, "t"),
    ]
    for check in checks:
        try:
            check()
        except ApiError as e:
            assert e.http_code == 400 and e.status == "INVALID_ARGUMENT" and e.message
