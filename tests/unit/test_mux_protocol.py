"""The connection daemon's wire format: what the client rebuilds is what the daemon had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpuctl import errors
from tpuctl.workers import mux
from tpuctl.workers.base import SshTarget, WorkerResult
from tpuctl.workers.muxproto import result_to_dict

texts = st.text(max_size=60)


@given(st.builds(WorkerResult, index=st.integers(0, 1023),
                 exit_code=st.none() | st.integers(0, 255), error=st.none() | texts,
                 timed_out=st.booleans(), duration=st.floats(0, 1e6), stdout=texts,
                 unreached=st.booleans()))
def test_results_round_trip_through_a_frame(r: WorkerResult) -> None:
    frame = json.loads(mux.encode({"results": [result_to_dict(r)]}))
    assert mux.result_from_dict(frame["results"][0]) == r


@given(st.builds(SshTarget, index=st.integers(0, 1023), host=texts, port=st.integers(1, 65535),
                 username=texts, host_key=st.none() | texts))
def test_targets_round_trip(t: SshTarget) -> None:
    assert mux.target_from_dict(json.loads(mux.encode(mux.target_to_dict(t)))) == t


def test_typed_errors_keep_their_class_exit_code_and_hint() -> None:
    for exc in (errors.UsageError("bad", "fix"), errors.PreemptedError("gone", "recreate"),
                errors.ConfigError("key", None)):
        back = mux.error_from_dict(json.loads(mux.encode(mux.error_to_dict(exc))))
        assert type(back) is type(exc) and back.exit_code == exc.exit_code
        assert (back.message, back.hint) == (exc.message, exc.hint)


@pytest.mark.parametrize("name", ["ExitCode", "__class__", "IntEnum", "RemoteCommandError",
                                  "nonsense", None])
def test_an_unknown_or_unsafe_type_name_is_a_plain_tpuctl_error(name: object) -> None:
    back = mux.error_from_dict({"type": name, "message": "m", "hint": "h"})
    assert type(back) is errors.TpuctlError and back.message == "m"


def test_a_long_home_has_no_socket(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                   short_home: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / ("x" * 90)))
    assert mux.usable_socket_path() is None
    monkeypatch.setenv("HOME", str(short_home))
    assert mux.usable_socket_path() == short_home / ".tpuctl" / "mux" / f"{mux.code_id()}.sock"
