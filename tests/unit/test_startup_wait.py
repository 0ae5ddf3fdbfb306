"""Waiting for a node's startup script: only when it has one, once per session, a failure or
a timeout named per worker with its last lines; and remote/startup.sh reading the journal as
GCP's guest agent writes it (a stand-in journalctl on PATH)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.fakes import fake_ports
from tpuctl.errors import ExitCode, RemoteCommandError, TimeoutExpired
from tpuctl.ops.launch import LaunchSpec, launch
from tpuctl.ops.session import open_session
from tpuctl.ops.startup import parse, wait_startup

REMOTE = Path(__file__).parents[2] / "tpuctl" / "remote"


def _session(metadata: dict[str, str] | None = None):
    ports, cloud, fleet = fake_ports()
    sl = cloud.add_node("n1", accelerator="v6e-16")
    if metadata:
        cloud.set_metadata("n1", {**sl.metadata, **metadata})
    return ports, fleet


def _run(ports, fn):
    async def go():
        session = open_session(ports, "n1")
        try:
            return await fn(session)
        finally:
            await session.close()
    return asyncio.run(go())


def test_a_node_without_a_startup_script_is_not_asked():
    ports, fleet = _session()
    got = _run(ports, lambda s: wait_startup(s))
    assert not got.ran and "startup" not in fleet.scripts()


def test_launch_waits_once_for_the_startup_script_on_every_worker():
    ports, fleet = _session({"startup-script": "echo hi"})

    async def both(session):
        first = await wait_startup(session)
        await launch(session, LaunchSpec(command="true", workdir=".", env={}))
        return first

    got = _run(ports, both)
    assert got.ran and got.workers == 4
    calls = [c for c in fleet.script_calls if c[2] == "startup"]
    assert sorted(c[1] for c in calls) == [0, 1, 2, 3]  # once per worker, not again by launch
    assert fleet.scripts().index("startup") < fleet.scripts().index("launch check")


def test_a_startup_script_that_failed_stops_launch_naming_workers_and_lines():
    ports, fleet = _session({"startup-script": "exit 3"})
    fleet.startup[2] = "startup=done status=3\nstartup-script: mkdir: cannot create /data"
    with pytest.raises(RemoteCommandError) as e:
        _run(ports, lambda s: launch(s, LaunchSpec(command="true", workdir=".", env={})))
    assert e.value.exit_code == ExitCode.FAILED
    assert "failed on 1/4 worker(s): w2 exit status 3: mkdir: cannot create /data" in \
        e.value.message
    assert not any(c[2] == "launch" for c in fleet.script_calls)  # nothing started


def test_a_startup_script_still_running_at_the_deadline_is_a_timeout():
    ports, fleet = _session({"startup-script": "sleep 1000"})
    fleet.startup[0] = "startup=running"
    with pytest.raises(TimeoutExpired, match="still running after 5s on w0"):
        _run(ports, lambda s: wait_startup(s, timeout=5))


def test_parse_reads_state_status_and_lines():
    assert parse("startup=done status=0") == ("done", 0, [])
    assert parse("startup=done status=7\nstartup-script: boom") == ("done", 7, ["boom"])
    assert parse("startup=none") == ("none", None, [])
    assert parse("") == ("unknown", None, [])


# -- remote/startup.sh against journal texts --------------------------------------------------
FINISHED = """Starting startup scripts (version 20240701.00).
Found startup-script in metadata.
startup-script: wrote /tmp/x
startup-script exit status 0
Finished running startup scripts."""
FAILED_NEW = """Starting startup scripts (version 20250101.00).
Found startup-script in metadata.
startup-script: oops
Script "startup-script" failed with error: exit status 4
Finished running startup scripts"""


def _startup_sh(tmp_path: Path, journal: str | None, expect: str = "1", timeout: str = "1"
                ) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if journal is not None:
        (tmp_path / "journal").write_text(journal)
        stub = bin_dir / "journalctl"
        stub.write_text(f"#!/bin/bash\ncat {tmp_path / 'journal'}\n")
        stub.chmod(0o755)
        sudo = bin_dir / "sudo"  # passwordless, as on a TPU VM (and the emulator's)
        sudo.write_text('#!/bin/bash\n[ "$1" = -n ] && shift\nexec "$@"\n')
        sudo.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin" if journal is not None else str(bin_dir) + ":/nonexist"
    env = {"PATH": path, "HOME": str(tmp_path)}
    bash = "/bin/bash"
    r = subprocess.run([bash, str(REMOTE / "startup.sh"), timeout, expect], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize(("journal", "expect", "answer"), [
    (FINISHED, "1", "startup=done status=0\nstartup-script: wrote /tmp/x\n"),
    (FAILED_NEW, "1", "startup=done status=4\nstartup-script: oops\n"),
    ("Starting startup scripts.\nNo startup scripts to run.", "1", "startup=none\n"),
    ("Starting startup scripts.\nFound startup-script in metadata.\nstartup-script: a",
     "0", "startup=running\nstartup-script: a\n"),
    ("-- No entries --", "1", "startup=running\n"),  # expected, not begun yet: waits
    ("-- No entries --", "0", "startup=none\n"),  # not a node with one
])
def test_startup_sh_reads_the_guest_agents_journal(tmp_path, journal, expect, answer):
    assert _startup_sh(tmp_path, journal, expect) == answer


def test_startup_sh_reads_the_journal_through_sudo_when_the_user_cannot(tmp_path):
    """journalctl as the user shows nothing of the unit (no `adm` group); as root it does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "journal").write_text(FINISHED)
    (bin_dir / "journalctl").write_text(
        f'#!/bin/bash\n[ -n "$AS_ROOT" ] && cat {tmp_path / "journal"} || '
        'echo "No journal files were opened due to insufficient permissions."\n')
    (bin_dir / "sudo").write_text('#!/bin/bash\n[ "$1" = -n ] && shift\nAS_ROOT=1 exec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["/bin/bash", str(REMOTE / "startup.sh"), "1", "1"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.splitlines()[0] == "startup=done status=0", r.stderr


def test_startup_sh_without_journalctl_says_none(tmp_path):
    env = {"PATH": "/nonexistent-dir", "HOME": str(tmp_path)}
    r = subprocess.run(["/bin/bash", str(REMOTE / "startup.sh"), "1", "1"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, "startup=none\n")
