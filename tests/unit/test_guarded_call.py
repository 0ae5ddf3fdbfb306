"""A session's first script call is guarded (ops/session.py, remote.guarded): one round trip
where the worker scripts are installed, an install and one run where they are not, and never
a script run twice or skipped. The workers here are a small stand-in that keeps, per worker,
whether this version of the scripts is installed, and what ran."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from tpuctl import remote
from tpuctl.model import Slice, Worker
from tpuctl.ops.session import SliceSession
from tpuctl.workers.base import Listener, OnOutput, SshTarget, WorkerResult


class Workers:
    def __init__(self, n: int, installed: set[int], *, lost_once: Sequence[int] = ()) -> None:
        self.n, self.installed, self.lost_once = n, set(installed), set(lost_once)
        self.calls: list[tuple[str, tuple[int, ...]]] = []  # (what, workers), in order
        self.ran: list[tuple[int, str]] = []  # (worker, script) that really ran

    async def run(self, command: str | Mapping[int, str], *,
                  indices: Sequence[int] | None = None, timeout: float | None = None,
                  stdin: bytes | None = None, on_output: OnOutput | None = None,
                  capture: bool = False) -> list[WorkerResult]:
        assert isinstance(command, str)
        chosen = tuple(sorted(indices if indices is not None else range(self.n)))
        call = remote.script_call(command)
        assert call is not None, command
        script = call[0]
        kind = "guarded" if remote.is_guarded(command) else script
        self.calls.append((kind, chosen))
        out = []
        for i in chosen:
            if i in self.lost_once:
                self.lost_once.discard(i)
                out.append(WorkerResult(i, None, error="connection lost"))
                continue
            if script == remote.INSTALL_SCRIPTS:
                assert stdin, "the installer reads the bundle"
                self.installed.add(i)
                out.append(WorkerResult(i, 0))
            elif kind == "guarded" and i not in self.installed:
                out.append(WorkerResult(i, remote.ABSENT))
            else:
                assert i in self.installed, f"{script} ran on w{i} without the scripts"
                self.ran.append((i, script))
                if on_output is not None:
                    on_output(i, "stdout", f"{script} on {i}")
                out.append(WorkerResult(i, 0))
        return out

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        raise NotImplementedError

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _session(pool: Workers) -> SliceSession:
    sl = Slice(name="n", project="p", zone="z", accelerator_type="v6e-16",
               runtime_version="r", state="READY",
               workers=tuple(Worker(i, f"10.0.0.{i}") for i in range(pool.n)))
    return SliceSession(ports=cast(Any, None), slice=sl, pool=pool)


def _status(s: SliceSession, **kw: Any) -> list[WorkerResult]:
    return asyncio.run(s.script("status", "-", "0", **kw))


def test_installed_everywhere_costs_one_round_trip() -> None:
    pool = Workers(4, installed={0, 1, 2, 3})
    s = _session(pool)
    assert [r.exit_code for r in _status(s)] == [0, 0, 0, 0]
    assert pool.calls == [("guarded", (0, 1, 2, 3))]
    assert sorted(pool.ran) == [(i, "status") for i in range(4)]


@pytest.mark.parametrize("idempotent", [True, False])
def test_missing_scripts_are_installed_and_the_script_runs_once_there(idempotent: bool
                                                                      ) -> None:
    pool = Workers(3, installed={0, 2})
    s = _session(pool)
    seen: list[tuple[int, str]] = []
    got = asyncio.run(s.script("follow", "-", "0", idempotent=idempotent,
                               on_output=lambda i, _s, line: seen.append((i, line))))
    assert [(r.index, r.exit_code) for r in got] == [(0, 0), (1, 0), (2, 0)]
    assert pool.calls == [("guarded", (0, 1, 2)), ("install", (0, 1, 2)), ("follow", (1,))]
    assert sorted(pool.ran) == [(0, "follow"), (1, "follow"), (2, "follow")]
    assert sorted(seen) == [(0, "follow on 0"), (1, "follow on 1"), (2, "follow on 2")]


def test_later_calls_are_not_guarded_again() -> None:
    pool = Workers(2, installed=set())
    s = _session(pool)
    _status(s)
    _status(s)
    assert [c[0] for c in pool.calls] == ["guarded", "install", "status", "status"]


def test_a_call_with_stdin_installs_first() -> None:
    pool = Workers(2, installed={0})
    s = _session(pool)
    asyncio.run(s.script("secrets", "x", stdin=b"data"))
    assert [c[0] for c in pool.calls] == ["install", "secrets"]


def test_a_lost_connection_on_the_guarded_call_is_retried_only_when_idempotent() -> None:
    pool = Workers(2, installed={0, 1}, lost_once={1})
    got = _status(_session(pool))
    assert [r.exit_code for r in got] == [0, 0]
    assert pool.ran.count((1, "status")) == 1
    pool = Workers(2, installed={0, 1}, lost_once={1})
    got = asyncio.run(_session(pool).script("follow", "-", idempotent=False))
    assert [r.exit_code for r in got] == [0, None]
    assert (1, "follow") not in pool.ran


def test_no_worker_script_exits_with_the_guard_s_status() -> None:
    """ABSENT must mean "the scripts are not there", never a script's own exit."""
    here = Path(remote.__file__).parent
    scripts = sorted(here.glob("*.sh"))
    assert scripts
    for p in scripts:
        assert not re.search(rf"\bexit\s+{remote.ABSENT}\b", p.read_text()), p.name
    cmd = remote.guarded_call(remote.scripts_hash(), "status", ["-", "0"])
    assert remote.is_guarded(cmd) and remote.script_call(cmd) == ("status", ["-", "0"])
