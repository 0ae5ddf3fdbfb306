import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl.cloud.groups import global_index, worker_of
from tpuctl.errors import UsageError
from tpuctl.model import Slice, Worker
from tpuctl.workers.select import MAX_WORKERS, parse_worker_selection


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


# --- the `sSwW` forms of a multislice group (slices x hosts, as cloud/groups.py counts) ---

def _group(slices: int, hosts: int) -> Slice:
    return Slice("g", "p", "z", "v6e-16", "rt", "READY", slices=slices,
                 workers=tuple(Worker(i, f"10.0.0.{i}") for i in range(slices * hosts)))


@pytest.mark.parametrize(
    "spec,expected",
    [("s0", [0, 1, 2, 3]), ("s1", [4, 5, 6, 7]), ("s1w0", [4]), ("s1w1-2", [5, 6]),
     ("s0w3,s1w0", [3, 4]), ("0,s1w3", [0, 7]), ("s1,4-5", [4, 5, 6, 7]),
     (" s1w0 , s0 ", [0, 1, 2, 3, 4]), ("s0,s1", list(range(8)))],
)
def test_slice_selection_in_a_group_of_2_slices_of_4(spec, expected):
    assert parse_worker_selection(spec, 8, 2) == expected


def test_one_slice_s0_is_every_worker_and_s0wN_is_N():
    assert parse_worker_selection("s0", 4) == [0, 1, 2, 3]
    assert parse_worker_selection("s0w2", 4, slices=1) == [2]
    assert parse_worker_selection("s0w1-3", 4) == [1, 2, 3]


def test_a_slice_beyond_the_group_is_named_with_the_range():
    with pytest.raises(UsageError) as e:
        parse_worker_selection("s3w0", 8, 2)
    assert e.value.message == "slice 3 does not exist: the group has 2 slice(s), s0-s1"
    assert "s0-s1" in (e.value.hint or "")


def test_a_worker_beyond_its_slice_is_named_with_the_hosts_per_slice():
    with pytest.raises(UsageError) as e:
        parse_worker_selection("s1w2-4", 8, 2)
    assert e.value.message == "worker s1w4 does not exist: each slice has 4 worker(s), w0-w3"
    assert "s1w0-3" in (e.value.hint or "")


def test_a_slice_on_a_single_slice_node_says_it_is_not_a_group():
    with pytest.raises(UsageError, match="not a multislice group"):
        parse_worker_selection("s1w0", 4)
    with pytest.raises(UsageError, match="s0w4 does not exist: the node has 4"):
        parse_worker_selection("s0w4", 4)


@pytest.mark.parametrize("spec", ["s", "sw", "s1w", "s1w-1", "s1w1-", "s-1", "s1x", "s1w0-x",
                                  "s1w2-1", "s1w0w1", "s 1", "s1 w0", "s1w+1", "s١", "S1",
                                  "s999", "s0w99999999999999", "s1w0-65536"])
def test_bad_slice_syntax_is_a_usage_error_even_before_the_counts_are_known(spec):
    with pytest.raises(UsageError):
        parse_worker_selection(spec, None)
    with pytest.raises(UsageError):
        parse_worker_selection(spec, 8, 2)


def test_syntax_only_accepts_the_slice_forms():
    parse_worker_selection("s1w0-3,s2,0", None)  # the counts decide later


def test_existing_error_texts_are_unchanged():
    with pytest.raises(UsageError) as e:
        parse_worker_selection("4", 4, 2)
    assert e.value.message == "worker 4 does not exist: the node has 4 worker(s), 0-3"
    with pytest.raises(UsageError) as e:
        parse_worker_selection("1-x", 4)
    assert e.value.message == "invalid worker selection '1-x' (at '1-x')"
    assert e.value.hint == "use 'all', an index like 0, a list 0,2 or a range 1-3"


@given(st.data(), st.integers(1, 16), st.integers(1, 16))
def test_slice_worker_selection_is_global_index(data, slices, hosts):
    sl = _group(slices, hosts)
    picks = data.draw(st.lists(st.tuples(st.integers(0, slices - 1), st.integers(0, hosts - 1)),
                               min_size=1, max_size=8))
    spec = ",".join(f"s{s}w{w}" for s, w in picks)
    assert parse_worker_selection(spec, len(sl.workers), sl.slices) == \
        sorted({global_index(sl, s, w) for s, w in picks})
    s, lo = picks[0]
    hi = data.draw(st.integers(lo, hosts - 1))
    assert parse_worker_selection(f"s{s}w{lo}-{hi}", len(sl.workers), sl.slices) == \
        [global_index(sl, s, w) for w in range(lo, hi + 1)]
    assert [worker_of(sl, i) for i in parse_worker_selection(f"s{s}", len(sl.workers),
                                                             sl.slices)] == \
        [(s, w) for w in range(hosts)]


_HOSTILE = st.text(alphabet="sw0123456789-,* all\x00١", max_size=60) | st.text(max_size=40)


@given(_HOSTILE, st.sampled_from([None, 1, 4, 8, 4096]), st.integers(1, 4))
def test_hostile_selections_raise_only_usage_errors_and_stay_small(spec, n, slices):
    try:
        out = parse_worker_selection(spec, n, slices)
    except UsageError:
        return
    assert len(out) <= (n if n is not None else MAX_WORKERS)
    assert out == sorted(set(out))


def test_many_overlapping_huge_ranges_are_built_once():
    spec = ",".join(["0-65535"] * 5000 + ["s255w0-65535"] * 5000)
    assert len(parse_worker_selection(spec, None)) == MAX_WORKERS


def test_the_fast_path_lets_the_slice_forms_through():
    """Its syntax check passes them; a group's selection is then the full CLI's to resolve
    (the fast path serves single slices only: cli/fast/node.py)."""
    from tpuctl.cli.fast import commands
    from tpuctl.cli.fast.args import parse

    for worker in ("s1w0-3", "s0,2"):
        args = parse(["exec", "g", "-w", worker, "--", "true"])
        assert args is not None and commands._valid(args), worker


@pytest.mark.parametrize("spec,expected", [("w3", [3]), ("w1-2", [1, 2]), ("w0,3", [0, 3]),
                                           ("w0,w2-3", [0, 2, 3])])
def test_a_single_slices_labels_select_its_workers(spec, expected):
    assert parse_worker_selection(spec, 4) == expected
    parse_worker_selection(spec, None)  # and pass the syntax check


@pytest.mark.parametrize("spec", ["w", "w-1", "wx", "w4", "w2-1", "ww1", "w1w2"])
def test_bad_labels_are_usage_errors_naming_what_was_written(spec):
    with pytest.raises(UsageError) as e:
        parse_worker_selection(spec, 4)
    assert spec[:3] in e.value.message or "does not exist" in e.value.message


def test_a_bare_label_in_a_multislice_group_is_ambiguous_and_says_how_to_name_it():
    with pytest.raises(UsageError) as e:
        parse_worker_selection("w1", 8, slices=2)
    assert "'w1'" in e.value.message and "multislice" in e.value.message
    assert e.value.hint is not None and "s0w1" in e.value.hint
