"""The cost ledger file: private, append-only, safe with concurrent writers, and read
defensively (torn lines, foreign or hostile content)."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tpuctl.ledger import FileLedger, LedgerEvent, NullLedger, ReadOnlyLedger, parse_event


def _event(i: int = 0, kind: str = "run_start") -> LedgerEvent:
    return LedgerEvent(kind=kind, t=1000.0 + i, cloud="gcp", project="p", zone="us-east5-b",
                       node="task", run=f"r{i}" if kind.startswith("run") else "",
                       accelerator_type="v6e-16", price=43.2, currency="USD")


def test_events_round_trip_in_a_private_file(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "t" / "ledger.jsonl")
    ledger.record(_event(1, "create"))
    ledger.record(_event(2))
    assert ledger.read() == [_event(1, "create"), _event(2)]
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ledger.path.parent.stat().st_mode) == 0o700


def test_a_torn_last_line_is_skipped_and_never_swallows_the_next_event(tmp_path: Path) -> None:
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    ledger.record(_event(1))
    with ledger.path.open("a") as f:
        f.write('{"v":1,"kind":"run_st')  # a crash in the middle of a write
    ledger.record(_event(2))
    assert ledger.read() == [_event(1), _event(2)]


def _write_many(path: str, worker: int) -> None:
    ledger = FileLedger(Path(path))
    for i in range(50):
        ledger.record(_event(worker * 1000 + i))


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    events = FileLedger(path).read()
    assert len(events) == 200
    assert len(path.read_text().splitlines()) == 200  # every line a whole event
    assert {e.run for e in events} == {f"r{w * 1000 + i}" for w in range(4) for i in range(50)}


def test_an_unwritable_ledger_warns_once_and_fails_nothing(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    FileLedger._warned = False
    ledger = FileLedger(blocker / "ledger.jsonl")  # its directory cannot exist
    ledger.record(_event(1))
    ledger.record(_event(2))
    assert capsys.readouterr().err.count("cannot write the cost ledger") == 1
    assert ledger.read() == []


def test_null_and_read_only_ledgers_write_nothing(tmp_path: Path) -> None:
    real = FileLedger(tmp_path / "ledger.jsonl")
    real.record(_event(1))
    ro = ReadOnlyLedger(real)
    ro.record(_event(2))
    assert ro.read() == [_event(1)] and real.read() == [_event(1)]
    NullLedger().record(_event(3))
    assert NullLedger().read() == []


def test_foreign_lines_are_not_events() -> None:
    good = _event(1).to_line()
    assert parse_event(good) == _event(1)
    for bad in ("", "null", "[]", '{"v":2}', good.replace('"run_start"', '"explode"'),
                good.replace('"t":1001.0', '"t":-1'), good.replace('"t":1001.0', '"t":1e999'),
                good.replace('"node":"task"', '"node":"../etc"'),
                good.replace('"run":"r1"', '"run":"a b"'),
                good.replace('"zone":"us-east5-b"', '"zone":"Z\\u001b[2J"'),
                good.replace('"price":43.2', '"price":true')):
        assert parse_event(bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_line_is_an_event_or_nothing(line: str) -> None:
    event = parse_event(line)
    assert event is None or isinstance(event, LedgerEvent)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "kind", "t", "node", "zone", "run", "price",
                                        "cloud", "project", "spot"]),
                       st.none() | st.booleans() | st.integers() | st.floats()
                       | st.text(max_size=20), max_size=10))
def test_hostile_objects_never_pass_unchecked(obj: dict) -> None:
    import json

    event = parse_event(json.dumps(obj))
    if event is not None:
        assert event.node and event.t >= 0 and all(c.isprintable() for c in event.node)
