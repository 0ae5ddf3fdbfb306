import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.errors import UsageError
from tpuctl.workers.select import parse_worker_selection


@pytest.mark.parametrize(
    "spec,n,expected",
    [("all", 4, [0, 1, 2, 3]), ("0", 4, [0]), ("0,2-3", 4, [0, 2, 3]), ("3,1", 4, [1, 3]),
     ("1-1", 2, [1]), ("0-63", 64, list(range(64)))],
)
def test_selection(spec, n, expected):
    assert parse_worker_selection(spec, n) == expected


@pytest.mark.parametrize("spec", ["4", "0-4", "x", "1-", "-1", "2-1", "0,,1", "1 2", "1.5"])
def test_bad_selection(spec):
    with pytest.raises(UsageError):
        parse_worker_selection(spec, 4)


def test_syntax_only_check_makes_no_assumption_about_size():
    assert parse_worker_selection("0,7", None) == [0, 7]
    with pytest.raises(UsageError):
        parse_worker_selection("a-b", None)


@given(st.sets(st.integers(0, 63), min_size=1))
def test_round_trip_of_lists(indices):
    spec = ",".join(str(i) for i in sorted(indices))
    assert parse_worker_selection(spec, 64) == sorted(indices)
