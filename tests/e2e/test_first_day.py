"""A new user's first day (issue 13), through the real CLI on the emulator: an unreachable
worker, secrets with a bad line, `runs`, exit codes in JSON, `ssh` with a shell string, the
terminal (spinner, job lines, redrawn `status --watch`), and small control-plane papercuts.

One 2-worker node (v4-16) serves the module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, wait_until
from tests.e2e.test_loop import git, in_repo, worker_home

pytestmark = pytest.mark.e2e

NODE = "first-day"
FAILING = "echo hello-$TPUCTL_WORKER_ID; sleep 0.5; echo bye-$TPUCTL_WORKER_ID; exit 7"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first") / "firstday"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "fail.yaml").write_text(f"name: {NODE}\naccelerator: v4-16\ncommand: '{FAILING}'\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


@pytest.fixture(scope="module")
def node(cli: Cli, repo: Path) -> Iterator[str]:
    r = cli("create", NODE, "--type", "v4-16")
    assert r.returncode == 0, r.stderr
    r = in_repo(cli, repo, "sync", NODE)
    assert r.returncode == 0, r.stderr
    yield NODE
    cli("delete", NODE, "--yes")


def _json(r: subprocess.CompletedProcess[str]) -> dict:
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == r.returncode, (doc, r.stderr)  # the process's, as an int
    return doc


def test_status_of_a_node_without_runs_exits_3_and_says_3(cli, node):
    r = cli("status", node, "--json")
    assert r.returncode == 3 and _json(r)["state"] == "none"


def test_a_bad_secrets_line_pushes_nothing_and_keeps_the_workers_secrets(cli, node, emulator):
    r = cli("secrets", "push", node, "-", input="KEEP=old-value\n")
    assert r.returncode == 0, r.stderr
    r = cli("secrets", "push", node, "-", input="NEW=1\nBAD KEY=hf_Zq9secret\n")
    assert r.returncode == 2
    assert "line 2" in r.stderr and "nothing was pushed" in r.stderr
    assert "hf_Zq9secret" not in r.stdout + r.stderr and "BAD KEY" not in r.stderr
    assert "python-dotenv" not in r.stderr
    r = cli("secrets", "list", node, "--json")
    assert [w["keys"] for w in _json(r)["workers"]] == [["KEEP"], ["KEEP"]]
    for i in range(2):
        text = (worker_home(emulator, node, i) / ".tpuctl" / "secrets.env").read_text()
        assert text == "export KEEP=old-value\n"


def test_one_unreachable_worker_is_named_and_the_others_carry_on(cli, node, repo, emulator,
                                                                 tmp_path):
    r = in_repo(cli, repo, "launch", node, "--run-id", "fd-long", "--", "bash", "-c",
                "echo line-$TPUCTL_WORKER_ID; exec sleep 300")
    assert r.returncode == 0, r.stderr
    log = worker_home(emulator, node, 0) / ".tpuctl" / "runs" / "fd-long" / "worker0.log"
    wait_until(lambda: log.read_text() if log.exists() else "", lambda t: "line-0" in t)
    r = cli("emulator", "faults", f"unreachable-workers={node}:1")
    assert r.returncode == 0, r.stderr
    try:
        r = cli("status", node, "fd-long", "--json")
        assert r.returncode == 255
        doc = _json(r)
        assert [w["state"] for w in doc["workers"]] == ["running", "unreachable"]
        assert doc["state"] == "running" and "w1 unreachable" in r.stderr
        r = cli("tail", node, "fd-long")
        assert r.returncode == 255 and "[w0] line-0" in r.stdout
        assert "w1 unreachable" in r.stderr
        r = cli("runs", node, "--json")
        assert r.returncode == 255
        doc = _json(r)
        assert doc["runs"][0]["run_id"] == "fd-long" and doc["unreachable_workers"] == [1]
        r = cli("logs", "fetch", node, "fd-long", "--dest", str(tmp_path), "--json")
        assert r.returncode == 255
        doc = _json(r)
        assert doc["unreachable_workers"] == [1]
        assert (tmp_path / node / "fd-long" / "worker0.log").read_text() == "line-0\n"
        assert not (tmp_path / node / "fd-long" / "worker1.log").exists()
        r = cli("secrets", "push", node, "-", input="KEEP=new-value\n")
        assert r.returncode == 255 and "to 1 worker(s)" in r.stderr
        assert "w1 unreachable" in r.stderr
        r = cli("exec", node, "--", "true")
        assert r.returncode == 255
        r = cli("stop", node, "fd-long", "--grace", "1", "--json")
        assert r.returncode == 255
        doc = _json(r)
        assert [(w["result"], w["exit_code"]) for w in doc["workers"]] == [
            ("terminated", 143), ("unreachable", None)]
    finally:  # this fault only: the session's settings (its guest-agent delay) stay
        emulator.admin("POST", "faults", b'{"unreachable-workers": null}')
    # w1 was never touched: still running, still holding the old secrets
    doc = _json(cli("status", node, "fd-long", "--json"))
    assert [w["state"] for w in doc["workers"]] == ["exited", "running"]
    assert "old-value" in (worker_home(emulator, node, 1) / ".tpuctl/secrets.env").read_text()
    r = cli("stop", node, "fd-long", "--grace", "1")
    assert r.returncode == 0, r.stderr


def test_runs_lists_newest_first_and_a_wrong_run_id_points_at_it(cli, node, repo):
    for rid, code, expected in (("fd-a", "0", 0), ("fd-b", "$((TPUCTL_WORKER_ID * 5))", 5)):
        r = in_repo(cli, repo, "launch", node, "--run-id", rid, "--", "bash", "-c",
                    f"exit {code}")
        assert r.returncode == 0, r.stderr
        assert in_repo(cli, repo, "tail", node, rid, "--follow").returncode == expected
    r = cli("runs", node, "--json")
    runs = {x["run_id"]: x for x in _json(r)["runs"]}
    order = [x["run_id"] for x in _json(r)["runs"]]
    assert order.index("fd-b") < order.index("fd-a") < order.index("fd-long")
    assert (runs["fd-b"]["state"], runs["fd-b"]["exit_code"]) == ("failed", 5)
    assert (runs["fd-a"]["state"], runs["fd-a"]["exit_code"]) == ("succeeded", 0)
    assert runs["fd-long"]["state"] == "stopped" and runs["fd-long"]["started_at"]
    r = cli("runs", node)
    assert r.returncode == 0 and r.stdout.splitlines()[1].split()[:2] == ["fd-b", "failed"]
    r = cli("status", node, "fd-b", "--json")
    assert r.returncode == 5 and _json(r)["state"] == "failed"
    r = cli("tail", node, "no-such-run")
    assert r.returncode == 3 and f"tpuctl runs {node}" in r.stderr


def test_ssh_runs_a_command_string_through_the_remote_shell(cli, node):
    r = cli("ssh", node, "--worker", "1", "--", "echo $TPU_WORKER_ID; exit 4")
    assert r.returncode == 4, r.stderr
    assert r.stdout.strip() == "1"


def test_install_project_reaches_the_workers(cli, node, repo):
    r = in_repo(cli, repo, "bootstrap", node, "--install-project")
    # this repository has no pyproject.toml: the workers' `uv pip install -e` says so
    assert r.returncode == 1 and "pyproject.toml" in r.stderr


def _spawn(cli: Cli, cwd: Path, *args: str):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "tpuctl", *args], env=cli.env(),
                          cwd=str(cwd), encoding="utf-8", timeout=240, dimensions=(40, 160))
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


_SGR = re.compile(r"\x1b\[[0-9;]*m")


def test_up_at_a_terminal_names_each_step_and_keeps_job_lines_apart(cli, node, repo):
    raw, code = _spawn(cli, repo, "up", "fail.yaml")
    assert code == 7, raw[-2000:]
    text = _SGR.sub("", raw)
    assert re.search(r"✗ run\s+failed\s+exit 7", text) and "✓ run" not in text
    # the spinner moves on from the node's state to the step under way
    assert f"{node}: READY" not in text[text.index("✓ sync"):]
    assert f"{node}: running" in text
    # every job line starts a row of its own (never glued to the spinner's text)
    lines = [m.start() for m in re.finditer(r"\[w[01]\] (hello|bye)-", text)]
    assert len(lines) == 4
    for at in lines:
        assert text[:at].endswith(("\n", "\r", "\x1b[2K")), repr(text[at - 40:at + 10])


def test_up_json_carries_the_process_exit_code(cli, node, repo):
    r = in_repo(cli, repo, "up", "fail.yaml", "--json")
    assert r.returncode == 7 and _json(r)["steps"][-1]["outcome"] == "failed"
    r = in_repo(cli, repo, "up", "fail.yaml", "--detach", "--json")
    assert r.returncode == 0 and _json(r)["run_id"].startswith(f"{node}-")
    assert in_repo(cli, repo, "tail", node, "--follow").returncode == 7


def test_status_watch_redraws_in_place_at_a_terminal(cli, node, repo):
    r = in_repo(cli, repo, "launch", node, "--run-id", "fd-watch", "--", "sleep", "2")
    assert r.returncode == 0, r.stderr
    raw, code = _spawn(cli, repo, "status", node, "fd-watch", "--watch", "--interval", "0.3")
    assert code == 0, raw[-2000:]
    text = _SGR.sub("", raw)
    frames = text.count(f"node {node} READY; run fd-watch:")
    assert frames >= 2  # refreshed ...
    assert len(re.findall(r"\x1b\[\d*A", text)) >= frames - 1  # ... by moving the cursor up
    assert text.count("WORKER") == frames  # one table per frame, each over the last
    assert "succeeded" in text


def test_control_plane_papercuts(cli, node, emulator):
    r = cli("describe", "no-such-node")
    assert r.returncode == 3 and "%24alt" not in r.stderr and "enum-encoding" not in r.stderr
    r = cli("describe", node, env=cli.env(TPUCTL_API_ENDPOINT=emulator.endpoint + "/"))
    assert r.returncode == 0, r.stderr
    r = cli("create", "fd-v5p", "--type", "v5p-8", "--runtime", "bogus")
    assert r.returncode == 2 and "v2-alpha-tpuv5" in r.stderr.split("hint:")[1]
    r = cli("gc", "--project", "first-day-nothing-here")  # off a terminal, no --yes
    assert r.returncode == 0 and "nothing to collect" in r.stderr


def test_emulator_stop_then_start_keeps_the_endpoint(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TPUCTL_")}
    env.update(HOME=str(tmp_path), TPUCTL_PERSIST_CONNECTIONS="0")
    state = str(tmp_path / "emu")

    def emu(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "tpuctl", "emulator", *args, "--state-dir",
                            state], capture_output=True, text=True, env=env, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    try:
        first = emu("start")
        emu("stop")
        assert emu("start") == first and first.startswith("export TPUCTL_API_ENDPOINT=http")
    finally:
        emu("stop")


def test_a_jobs_escape_sequences_are_shown_at_a_terminal_and_kept_in_a_pipe(cli, node, repo):
    # clear the screen, write the clipboard (OSC 52), a red word, a progress bar's redraw
    fmt = r"a\033[2Jb\033]52;c;SGVsbG8=\007c \033[31mred\n10%%\r100%%\n"
    raw, code = _spawn(cli, repo, "exec", node, "--worker", "0", "--", "printf", fmt)
    assert code == 0, raw[-2000:]
    assert "a^[[2Jb^[]52;c;SGVsbG8=^Gc \x1b[31mred\x1b[0m" in raw
    assert "\x1b[2J" not in raw and "\x1b]52" not in raw and "\x07" not in raw
    assert re.search(r"\[w0\](\x1b\[0m)? 100%\r?\n", raw) and "10%" not in raw
    piped = subprocess.run([sys.executable, "-m", "tpuctl", "exec", node, "--worker", "0", "--",
                            "printf", fmt], capture_output=True, env=cli.env(), timeout=120,
                           stdin=subprocess.DEVNULL)  # bytes: text mode would turn \r into \n
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == b"[w0] a\x1b[2Jb\x1b]52;c;SGVsbG8=\x07c \x1b[31mred\n[w0] 10%\r100%\n"
