"""The fast path (tpuctl/cli/fast/) and the full CLI give the same stdout, stderr and exit
code, byte for byte, for every command it serves, over the cases a user meets: success, a
failing worker, a timeout, an unknown node, a cold cache, a dead daemon, an unreachable
worker, worker scripts missing.

Each case runs the same command line twice in one HOME: once as users run it (through
`python -X importtime`, whose log tells which path ran: the fast path never imports typer;
its lines are removed before comparing) and once with TPUCTL_FAST_PATH=0, the full CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator, wait_until

pytestmark = pytest.mark.e2e

PERSIST = {"TPUCTL_PERSIST_CONNECTIONS": "60"}
Hook = Callable[[], None]


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    modules: set[str]  # what the process imported (the fast run only)

    @property
    def fast(self) -> bool:
        """The fast path did the command: the full CLI (typer) was never imported."""
        return "typer" not in self.modules

    @property
    def handed_off(self) -> bool:
        """The fast path started it, the full CLI finished it (cli/fast/handoff.py)."""
        return "tpuctl.workers.answered" in self.modules


@pytest.fixture(scope="module")
def fcli(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(home=tmp_path_factory.mktemp("fasthome"), endpoint=emulator.endpoint,
               token_file=emulator.token_file)


def _on(cli: Cli, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(*args, env=cli.env(**(PERSIST | env)))


def _daemon_pid(cli: Cli) -> int | None:
    r = _on(cli, "mux", "status", "--json", TPUCTL_FAST_PATH="0")
    return json.loads(r.stdout).get("pid") if r.returncode == 0 else None


def _warm(cli: Cli, node: str) -> None:
    """The worker list cached and the connection daemon holding the node's connections."""
    assert _on(cli, "exec", node, "--", "true").returncode == 0
    wait_until(lambda: _daemon_pid(cli), bool)
    assert _on(cli, "exec", node, "--", "true").returncode == 0


@pytest.fixture(scope="module")
def node(fcli: Cli) -> Iterator[str]:
    name = f"f-{uuid.uuid4().hex[:8]}"
    r = fcli("create", name, "--type", "v4-16")  # two workers
    assert r.returncode == 0, r.stderr
    _warm(fcli, name)
    yield name
    _on(fcli, "mux", "stop")
    fcli("delete", name, "--yes")


def _run(cli: Cli, args: tuple[str, ...], fast: bool) -> Outcome:
    env = cli.env(**PERSIST) if fast else cli.env(**PERSIST, TPUCTL_FAST_PATH="0")
    p = subprocess.run([sys.executable, *(["-X", "importtime"] if fast else []), "-m",
                        "tpuctl", *args], capture_output=True, text=True, timeout=120,
                       env=env, stdin=subprocess.DEVNULL, cwd=cli.home)
    log = [ln for ln in p.stderr.splitlines(keepends=True) if ln.startswith("import time:")]
    err = "".join(ln for ln in p.stderr.splitlines(keepends=True)
                  if not ln.startswith("import time:"))
    modules = {ln.rsplit("|", 1)[1].strip() for ln in log if ln.count("|") == 2}
    return Outcome(p.returncode, p.stdout, err, modules)


def both(cli: Cli, *args: str, before: Hook = lambda: None,
         normalize: Callable[[str], str] = lambda s: s) -> Outcome:
    """Run `tpuctl ARGS` through the fast path and through the full CLI (`before` each);
    assert the same exit code, stdout and stderr; return the fast run."""
    before()
    fast = _run(cli, args, fast=True)
    before()
    full = _run(cli, args, fast=False)
    assert (fast.code, normalize(fast.out), normalize(fast.err)) == \
        (full.code, normalize(full.out), normalize(full.err))
    return fast


def _heartbeats(text: str) -> str:
    """`status` shows how old each heartbeat is: seconds pass between the two runs, and a
    wider age ("9s ago", then "10s ago") widens its column, so column gaps count as one."""
    text = re.sub(r'\d+s ago|"heartbeat_age": \d+', "N", text)
    return re.sub(r"(?<=\S) {2,}(?=\S)", "  ", text)


def _forget_cache(cli: Cli) -> Hook:
    return lambda: shutil.rmtree(cli.home / ".tpuctl" / "cache", ignore_errors=True)


def _kill_daemon(cli: Cli) -> Hook:
    """A daemon killed with SIGKILL: its socket file stays, nothing listens on it."""
    def kill() -> None:
        pid = _daemon_pid(cli)
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: Path(f"/proc/{pid}").exists(), lambda alive: not alive)
    return kill


@pytest.fixture
def warm(fcli: Cli, node: str) -> Cli:
    """Each test starts with a fresh cache and a live daemon."""
    _warm(fcli, node)
    return fcli


# -- exec --------------------------------------------------------------------------------------
STAGGERED = ('sleep "0.$((TPU_WORKER_ID * 4))"; echo "out $TPU_WORKER_ID"; '
             'echo "err $TPU_WORKER_ID" >&2')


def test_exec_success(warm: Cli, node: str) -> None:
    r = both(warm, "exec", node, "--", "bash", "-c", STAGGERED)
    assert r.fast and r.code == 0
    assert r.out == "[w0] out 0\n[w1] out 1\n"
    assert r.err == "[w0] err 0\n[w1] err 1\n2/2 workers ok: w0 ok, w1 ok\n"
    j = both(warm, "exec", node, "-w", "1", "--json", "--", "echo", "a b",
             normalize=lambda s: re.sub(r'"seconds": [0-9.]+', "S", s))
    assert j.fast and json.loads(j.out)["workers"][0]["worker"] == 1
    assert j.err == "[w1] a b\n"


def test_exec_failing_worker(warm: Cli, node: str) -> None:
    r = both(warm, "exec", node, "--", "bash", "-c", "exit $((TPU_WORKER_ID * 3))")
    assert r.fast and r.code == 3
    assert r.err == "1/2 workers ok: w0 ok, w1 exit 3\n"


def test_exec_timeout(warm: Cli, node: str) -> None:
    r = both(warm, "exec", node, "--timeout", "0.5", "--", "sleep", "5")
    assert r.fast and r.code == 5
    assert "w0 timed out after 0.5s" in r.err


def test_exec_unknown_node_cold_cache_and_dead_daemon(warm: Cli, node: str) -> None:
    r = both(warm, "exec", "f-nosuchnode", "--", "true")
    assert not r.fast and r.code == 3 and "f-nosuchnode" in r.err
    r = both(warm, "exec", node, "--", "bash", "-c", STAGGERED, before=_forget_cache(warm))
    assert not r.fast and r.code == 0 and r.out == "[w0] out 0\n[w1] out 1\n"
    r = both(warm, "exec", node, "--", "bash", "-c", STAGGERED, before=_kill_daemon(warm))
    assert not r.fast and r.code == 0 and r.out == "[w0] out 0\n[w1] out 1\n"


def test_exec_bad_input_and_help_are_the_full_cli_s(warm: Cli, node: str) -> None:
    for args in (["exec", node, "-w", "7", "--", "true"], ["exec", "Bad_Name", "--", "true"],
                 ["exec", node, "--timeout", "0", "--", "true"], ["exec", node, "--help"],
                 ["exec", node, "--bogus", "--", "true"], ["exec", node, "true"]):
        r = both(warm, *args)
        assert not r.fast, args


def test_exec_with_an_unreachable_worker_is_finished_by_the_full_cli(
        warm: Cli, node: str, emulator: Emulator) -> None:
    key = "unreachable-workers"
    was = emulator.admin("GET", "faults").get("faults", {}).get(key)
    emulator.admin("POST", "faults", json.dumps({key: [*(was or []), f"{node}:1"]}).encode())
    try:
        r = both(warm, "exec", node, "--", "echo", "hi")
    finally:
        emulator.admin("POST", "faults", json.dumps({key: was}).encode())
    assert r.handed_off and r.code == 255
    assert r.out == "[w0] hi\n" and "1/2 workers ok: w0 ok, w1 " in r.err


# -- status ------------------------------------------------------------------------------------
def _launch(cli: Cli, node: str, *cmd: str, timeout: str | None = None) -> str:
    run = f"r{uuid.uuid4().hex[:8]}"
    extra = ["--timeout", timeout] if timeout else []
    r = cli("launch", node, "--run-id", run, *extra, "--", *cmd)
    assert r.returncode == 0, r.stderr
    return run


def _finished(cli: Cli, node: str, run: str) -> None:
    def state() -> str:
        r = _on(cli, "status", node, run, "--json")
        return str(json.loads(r.stdout)["state"]) if r.stdout.strip() else "?"
    wait_until(state, lambda s: s not in ("running", "?"), timeout=30)


def test_status_running_failing_and_timed_out(warm: Cli, node: str) -> None:
    failing = _launch(warm, node, "bash", "-c", "echo one; echo two; exit $TPU_WORKER_ID")
    _finished(warm, node, failing)
    r = both(warm, "status", node, failing, normalize=_heartbeats)
    # a finished run: the full CLI does it (it records the run's end in the cost ledger)
    assert not r.fast and r.code == 1 and ": failed" in r.out
    timed = _launch(warm, node, "sleep", "30", timeout="1")
    _finished(warm, node, timed)
    r = both(warm, "status", node, timed, normalize=_heartbeats)
    assert not r.fast and "timed-out" in r.out
    running = _launch(warm, node, "sleep", "300")
    try:
        r = both(warm, "status", node, running, normalize=_heartbeats)
        assert r.fast and r.code == 0 and "run " + running + ": running" in r.out
        j = both(warm, "status", node, "--json", normalize=_heartbeats)  # the latest
        assert j.fast and json.loads(j.out)["state"] == "running"
    finally:
        assert _on(warm, "stop", node, running, "--grace", "1").returncode == 0


def test_status_unknown_node_cold_cache_dead_daemon_and_no_run(warm: Cli, node: str) -> None:
    run = _launch(warm, node, "true")
    _finished(warm, node, run)
    r = both(warm, "status", "f-nosuchnode")
    assert not r.fast and r.code == 3
    r = both(warm, "status", node, run, before=_forget_cache(warm), normalize=_heartbeats)
    assert not r.fast and r.code == 0 and ": succeeded" in r.out
    r = both(warm, "status", node, "no-such-run")
    assert r.fast and r.code == 3  # every worker says: missing
    r = both(warm, "status", node, run, before=_kill_daemon(warm), normalize=_heartbeats)
    assert not r.fast and r.code == 0  # (last: the daemon the full CLI starts is not up yet)


# -- tail --------------------------------------------------------------------------------------
def test_tail(warm: Cli, node: str) -> None:
    run = _launch(warm, node, "bash", "-c",
                  'for i in 1 2 3 4; do echo "line $i of $TPU_WORKER_ID"; done; exit 2')
    _finished(warm, node, run)
    r = both(warm, "tail", node, run, "-w", "1", "-n", "2")
    assert r.fast and r.code == 0 and r.out == "[w1] line 3 of 1\n[w1] line 4 of 1\n"
    r = both(warm, "tail", node, run, "--lines", "1", "--worker", "0")
    assert r.fast and r.out == "[w0] line 4 of 0\n"
    r = both(warm, "tail", node, "no-such-run", "-w", "0")  # one worker: which fails first
    assert not r.fast and r.code == 3  # follow.sh: no such run; the full CLI names it
    r = both(warm, "tail", "f-nosuchnode")
    assert not r.fast and r.code == 3
    r = both(warm, "tail", node, run, "-w", "1", before=_forget_cache(warm))
    assert not r.fast and r.out.count("\n") == 4
    r = both(warm, "tail", node, run, "-w", "1", before=_kill_daemon(warm))
    assert not r.fast and r.out.count("\n") == 4


# -- stop --------------------------------------------------------------------------------------
def _run_ids(text: str) -> str:
    return re.sub(r"\br[0-9a-f]{8}\b", "RUN", text)


def _remove_scripts(cli: Cli, node: str) -> Hook:
    def remove() -> None:
        r = _on(cli, "exec", node, "--", "rm", "-rf", ".tpuctl/bin")
        assert r.returncode == 0, r.stderr
    return remove


def _run_ends(cli: Cli, node: str) -> int:
    """run_end lines of this node in the cost ledger (tpuctl/ledger.py)."""
    path = cli.home / ".tpuctl" / "ledger.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(1 for ln in lines if json.loads(ln).get("kind") == "run_end"
               and json.loads(ln).get("node") == node)


def test_stop(warm: Cli, node: str) -> None:
    ends = _run_ends(warm, node)
    r = both(warm, "stop", node, "--grace", "1", normalize=_run_ids,
             before=lambda: _launch(warm, node, "sleep", "300") and None)
    assert _run_ends(warm, node) == ends + 2  # both paths recorded the stopped run's end
    # it stopped a run: handed to the full CLI, which records the end in the cost ledger
    assert r.handed_off and r.code == 0 and r.err.count(": terminated (exit 143)") == 2
    # a stopped run again, with --json; then with the worker scripts gone (installed again)
    r = both(warm, "stop", node, "--json", "--grace", "1", normalize=_run_ids)
    assert r.fast and {w["result"] for w in json.loads(r.out)["workers"]} == {"not-running"}
    r = both(warm, "stop", node, "--grace", "1", before=_remove_scripts(warm, node),
             normalize=_run_ids)
    assert r.handed_off and r.code == 0 and r.err.count(": not-running (exit 143)") == 2


def test_stop_unknown_node_cold_cache_dead_daemon(warm: Cli, node: str) -> None:
    assert both(warm, "stop", "f-nosuchnode").code == 3
    r = both(warm, "stop", node, "no-such-run")
    assert r.handed_off and r.code == 3  # NotFoundError, raised by the full CLI
    r = both(warm, "stop", node, before=_forget_cache(warm))
    assert not r.fast and r.code == 0
    r = both(warm, "stop", node, before=_kill_daemon(warm))
    assert not r.fast and r.code == 0


# -- ssh-config --------------------------------------------------------------------------------
def test_ssh_config(warm: Cli, node: str) -> None:
    r = both(warm, "ssh-config", node)
    assert r.fast and r.code == 0 and f"Host {node}-w1" in r.out
    r = both(warm, "ssh-config", node, before=_forget_cache(warm))
    assert not r.fast and r.code == 0
    r = both(warm, "ssh-config", "f-nosuchnode")
    assert not r.fast and r.code == 3
