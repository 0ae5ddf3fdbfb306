"""The one backoff formula: exponential, capped, and never an overflow on a long wait."""

from __future__ import annotations

import itertools

from tpuctl import backoff


def test_delay_doubles_up_to_the_cap():
    assert [backoff.delay(a, first=0.5, cap=4.0) for a in range(1, 7)] == \
        [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_poll_delays_grow_then_stay_at_the_cap_for_ever():
    waits = list(itertools.islice(backoff.delays(first=0.2, cap=5.0), 100_000))
    assert waits[:3] == [0.2, 0.2 * 1.5, 0.2 * 1.5 * 1.5]
    assert waits[-1] == 5.0 and max(waits) == 5.0
    assert backoff.delay(10**6, first=0.2, cap=5.0, factor=1.5) == 5.0
