"""The loop on the emulator: sync, secrets, launch, tail, status, stop, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, UpInBackground, wait_until

pytestmark = pytest.mark.e2e

NODE = "loop-v6e16"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src") / "proj"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "job.sh").write_text("echo job on $TPUCTL_WORKER_ID\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


@pytest.fixture(scope="module")
def node(cli: Cli, repo: Path) -> str:
    r = cli("create", NODE, "--type", "v6e-16")
    assert r.returncode == 0, r.stderr
    r = in_repo(cli, repo, "sync", NODE)  # launches run in the checkout: have one everywhere
    assert r.returncode == 0, r.stderr
    yield NODE
    cli("delete", NODE, "--yes")


def in_repo(cli: Cli, repo: Path, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "tpuctl", *args], capture_output=True,
                          text=True, cwd=repo, env=cli.env(), stdin=subprocess.DEVNULL,
                          timeout=kw.get("timeout", 180))


def worker_home(emulator, node: str, i: int) -> Path:
    return emulator.state_dir / "nodes" / f"local-project.local-a.{node}" / f"w{i}" / "home"


def test_sync_bundle_puts_every_worker_at_the_commit_then_is_a_noop(cli, node, repo, emulator):
    sha = git(repo, "rev-parse", "HEAD")
    for i in range(4):  # the `node` fixture synced once already
        checkout = worker_home(emulator, node, i) / "work" / "proj"
        assert git(checkout, "rev-parse", "HEAD") == sha
        assert (checkout / "job.sh").is_file()
    r = in_repo(cli, repo, "sync", node, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["commit"] == sha and doc["noop"] is True
    assert doc["bundle_bytes"] == 0  # nothing sent when already there
    # a new commit travels as an incremental bundle and moves every worker
    (repo / "job.sh").write_text("echo job v2 on $TPUCTL_WORKER_ID\n")
    git(repo, "commit", "-qam", "second")
    new_sha = git(repo, "rev-parse", "HEAD")
    r = in_repo(cli, repo, "sync", node, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["commit"] == new_sha and sorted(doc["changed_workers"]) == [0, 1, 2, 3]
    assert r.stdout and 0 < doc["bundle_bytes"]
    for i in range(4):
        checkout = worker_home(emulator, node, i) / "work" / "proj"
        assert git(checkout, "rev-parse", "HEAD") == new_sha
        assert "v2" in (checkout / "job.sh").read_text()


def test_sync_names_untracked_files_and_refuses_tracked_changes_unless_allowed(cli, node,
                                                                              repo):
    # a secrets file git does not track is not part of the commit: named, never refused
    (repo / ".env").write_text("HF_TOKEN=hf_untracked\n")
    job = (repo / "job.sh").read_text()
    try:
        r = in_repo(cli, repo, "sync", node, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["untracked"] == [".env"]
        r = in_repo(cli, repo, "sync", node)
        assert r.returncode == 0 and "not synced (untracked): .env" in r.stderr
        (repo / "job.sh").write_text(job + "echo edited\n")
        r = in_repo(cli, repo, "sync", node)
        assert r.returncode == 2
        assert "uncommitted changes (job.sh)" in r.stderr and "--allow-dirty" in r.stderr
        r = in_repo(cli, repo, "sync", node, "--allow-dirty")
        assert r.returncode == 0, r.stderr
        assert "left out (uncommitted): job.sh" in r.stderr
    finally:
        (repo / ".env").unlink()
        (repo / "job.sh").write_text(job)


def test_sync_via_origin_refuses_an_unpushed_commit(cli, node, repo, tmp_path):
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git(repo, "remote", "add", "origin", str(bare))
    try:
        r = in_repo(cli, repo, "sync", node, "--via", "origin")
        assert r.returncode == 2
        assert "is not pushed to origin" in r.stderr and "--via bundle" in r.stderr
        git(repo, "push", "-q", "origin", "main")
        r = in_repo(cli, repo, "sync", node, "--via", "origin", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["commit"] == git(repo, "rev-parse", "HEAD")
    finally:
        git(repo, "remote", "remove", "origin")


SECRET = "s3cr3t-'quoted' $(touch /tmp/never) \"x\" tail"


def test_secrets_reach_every_worker_0600_and_never_print(cli, node, repo, emulator, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"HF_TOKEN='{SECRET.replace(chr(39), chr(92) + chr(39))}'\n"
                        "WANDB_API_KEY=abc123def\n")
    # the value as python-dotenv reads it is what the job must see
    from dotenv import dotenv_values

    expected = dotenv_values(env_file)["HF_TOKEN"]
    r = in_repo(cli, repo, "secrets", "push", node, str(env_file))
    assert r.returncode == 0, r.stderr
    assert "HF_TOKEN" in r.stderr and expected not in r.stdout + r.stderr
    assert "abc123def" not in r.stdout + r.stderr
    r = in_repo(cli, repo, "secrets", "list", node)
    assert r.stdout.count("HF_TOKEN WANDB_API_KEY") == 4 and "abc123def" not in r.stdout
    for i in range(4):
        f = worker_home(emulator, node, i) / ".tpuctl" / "secrets.env"
        assert oct(f.stat().st_mode & 0o777) == "0o600"
    # a job sees the exact value (compared by hash, so the value is never printed)
    r = in_repo(cli, repo, "launch", node, "--run-id", "secret-check", "--", "bash", "-c",
                'printf %s "$HF_TOKEN" | sha256sum')
    assert r.returncode == 0, r.stderr
    r = in_repo(cli, repo, "tail", node, "secret-check", "--follow")
    assert r.returncode == 0, r.stderr
    import hashlib

    digest = hashlib.sha256(expected.encode()).hexdigest()
    assert r.stdout.count(digest) == 4
    assert expected not in r.stdout + r.stderr
    assert not Path("/tmp/never").exists()


def test_failing_worker_makes_tail_exit_nonzero_and_name_it(cli, node, repo):
    script = 'echo "start $TPUCTL_WORKER_ID"; if [ "$TPUCTL_WORKER_ID" = 2 ]; then exit 3; fi'
    r = in_repo(cli, repo, "launch", node, "--run-id", "fail-one", "--", "bash", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fail-one"
    r = in_repo(cli, repo, "tail", node, "fail-one", "--follow")
    assert r.returncode == 3
    assert "first failing worker w2" in r.stderr
    for i in range(4):
        assert f"[w{i}] start {i}" in r.stdout
    r = in_repo(cli, repo, "status", node, "fail-one", "--json")
    st = json.loads(r.stdout)
    assert st["state"] == "failed" and st["exit_code"] == 3 == r.returncode
    assert [w["exit_code"] for w in st["workers"]] == [0, 0, 3, 0]


def test_env_contract_per_worker(cli, node, repo):
    code = ('import json,os; print(json.dumps({k: os.environ.get(k) for k in ['
            '"TPUCTL_RUN_ID","TPUCTL_WORKER_ID","TPUCTL_NUM_WORKERS","JAX_COORDINATOR_ADDRESS",'
            '"JAX_NUM_PROCESSES","JAX_PROCESS_ID","TPUCTL_RUN_DIR","EXTRA",'
            '"JAX_COMPILATION_CACHE_DIR","JAX_COORDINATOR_BIND_ADDRESS"]}))')
    r = in_repo(cli, repo, "launch", node, "--run-id", "env-check", "--env", "EXTRA=a b",
                "--", "python3", "-c", code)
    assert r.returncode == 0, r.stderr
    r = in_repo(cli, repo, "tail", node, "env-check", "--follow")
    assert r.returncode == 0, r.stderr
    envs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\[w(\d)\] (\{.*\})$", line)
        if m:
            envs[int(m.group(1))] = json.loads(m.group(2))
    assert sorted(envs) == [0, 1, 2, 3]
    coords = {e["JAX_COORDINATOR_ADDRESS"] for e in envs.values()}
    assert len(coords) == 1  # every worker points at worker 0
    assert {e["JAX_COORDINATOR_BIND_ADDRESS"] for e in envs.values()} == coords  # its own IP
    for i, e in envs.items():
        assert e["TPUCTL_WORKER_ID"] == e["JAX_PROCESS_ID"] == str(i)
        assert e["TPUCTL_NUM_WORKERS"] == e["JAX_NUM_PROCESSES"] == "4"
        assert e["TPUCTL_RUN_ID"] == "env-check" and e["EXTRA"] == "a b"
        assert e["TPUCTL_RUN_DIR"].endswith("/.tpuctl/runs/env-check")
        assert e["JAX_COMPILATION_CACHE_DIR"].endswith("/.cache/tpuctl/jax-compilation")


def _pgid_members(pgid: int) -> list[int]:
    """Live processes of a process group (a zombie is dead, only not yet reaped)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_second_launch_refused_then_replace_then_stop_leaves_nothing_alive(cli, node, repo,
                                                                          emulator):
    r = in_repo(cli, repo, "launch", node, "--run-id", "long-1", "--", "bash", "-c",
                "sleep 1000 & sleep 1000 & wait")
    assert r.returncode == 0, r.stderr
    r = in_repo(cli, repo, "launch", node, "--run-id", "long-2", "--", "true")
    assert r.returncode == 2
    assert "long-1 is still alive" in r.stderr and "--replace" in r.stderr
    # nothing half-started: long-2 exists on no worker
    for i in range(4):
        assert not (worker_home(emulator, node, i) / ".tpuctl/runs/long-2").exists()
    r = in_repo(cli, repo, "launch", node, "--run-id", "long-2", "--replace", "--", "bash",
                "-c", "sleep 1000 & sleep 1000 & wait")
    assert r.returncode == 0, r.stderr
    st1 = json.loads(in_repo(cli, repo, "status", node, "long-1", "--json").stdout)
    assert st1["state"] == "stopped"
    st = json.loads(in_repo(cli, repo, "status", node, "long-2", "--json").stdout)
    assert st["state"] == "running"
    pgids = []
    for i in range(4):
        run_dir = worker_home(emulator, node, i) / ".tpuctl/runs/long-2"
        pgids.append(int((run_dir / "pgid").read_text()))
    assert all(len(_pgid_members(g)) >= 3 for g in pgids)  # supervisor, bash, sleeps
    r = in_repo(cli, repo, "stop", node, "--grace", "3")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("terminated") + r.stderr.count("killed") == 4
    for g in pgids:
        assert _pgid_members(g) == []
    st = json.loads(in_repo(cli, repo, "status", node, "long-2", "--json").stdout)
    assert st["state"] == "stopped"


def test_a_stuck_worker_is_reported_hung_not_running(cli, node, repo, emulator):
    """A supervisor that stops beating (a frozen VM, a process stuck in the kernel) is `hung`.
    The emulated workers are local processes, so w2's whole run is frozen with SIGSTOP; the
    heartbeat file is then dated two minutes back instead of waiting the 30 s threshold."""
    import signal
    import time

    r = in_repo(cli, repo, "launch", node, "--run-id", "stuck-1", "--", "sleep", "1000")
    assert r.returncode == 0, r.stderr
    run_dir = worker_home(emulator, node, 2) / ".tpuctl/runs/stuck-1"
    pgid = int((run_dir / "pgid").read_text())
    os.killpg(pgid, signal.SIGSTOP)
    try:
        (run_dir / "heartbeat").write_text(f"{int(time.time()) - 120}\n")
        r = in_repo(cli, repo, "status", node, "stuck-1", "--json")
        st = json.loads(r.stdout)
        assert st["state"] == "hung", st
        by_worker = {w["worker"]: w for w in st["workers"]}
        assert by_worker[2]["state"] == "hung" and by_worker[2]["heartbeat_age"] >= 120
        assert [by_worker[i]["state"] for i in (0, 1, 3)] == ["running"] * 3
        assert st["exit_code"] == 0 == r.returncode  # not finished, nothing failed yet
        r = in_repo(cli, repo, "status", node, "stuck-1")
        assert "hung" in r.stdout + r.stderr
    finally:
        os.killpg(pgid, signal.SIGCONT)
        assert in_repo(cli, repo, "stop", node, "--grace", "2").returncode == 0
    assert _pgid_members(pgid) == []


def _holding(pid: int, dev: Path) -> bool:
    """Whether process `pid` has `dev` open (what launch.sh's busy check looks for)."""
    try:
        return any(os.readlink(fd) == str(dev) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def test_busy_tpu_is_refused_with_the_holder(cli, node, repo, emulator):
    dev = worker_home(emulator, node, 1).parent / "dev" / "accel0"
    holder = subprocess.Popen(["bash", "-c", f"exec 3<{dev}; sleep 60"])
    try:
        wait_until(lambda: _holding(holder.pid, dev), bool)
        r = in_repo(cli, repo, "launch", node, "--run-id", "busy-1", "--", "true")
        assert r.returncode == 2
        assert f"pid={holder.pid}" in r.stderr and "w1" in r.stderr
    finally:
        holder.kill()
        holder.wait()


def test_dry_runs_on_a_real_node_read_it_and_change_nothing(cli, node, repo, emulator):
    """The wiring of --dry-run: the real API is read, nothing reaches the workers or changes
    the node (the rules of what is printed: tests/unit/test_dryrun.py, tests/golden/)."""
    before = json.loads(cli("describe", node, "--json").stdout)
    marker = worker_home(emulator, node, 0) / ".tpuctl" / "runs" / "dry-1"
    steps = {
        ("sync", node, "--dry-run"): "sync.sh bundle",
        ("bootstrap", node, "--requirements", "job.sh", "--dry-run"): "bootstrap.sh start",
        ("launch", node, "--run-id", "dry-1", "--dry-run", "--", "true"):
            "launch.sh start dry-1 0",
        ("delete", node, "--dry-run"):
            f"DELETE /v2/projects/local-project/locations/local-a/nodes/{node}",
    }
    for args, expected in steps.items():
        r = in_repo(cli, repo, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert expected in r.stdout and "not sent" in r.stderr, (args, r.stdout)
    assert not marker.exists()
    after = json.loads(cli("describe", node, "--json").stdout)
    for doc in (before, after):  # the clock's, not the node's: they grow while we look
        for key in ("age_s", "cost_so_far"):
            doc.pop(key, None)
    assert after == before  # still there, untouched


def test_status_of_a_node_without_runs_and_bad_run_ids(cli, repo):
    r = in_repo(cli, repo, "launch", NODE, "--run-id", "bad id;", "--", "true")
    assert r.returncode == 2 and "invalid run id" in r.stderr
    r = in_repo(cli, repo, "tail", NODE, "no-such-run")
    assert r.returncode == 3


def _drop(emulator, node: str) -> None:
    emulator.admin("POST", f"projects/local-project/locations/local-a/nodes/{node}:dropConnections")


def test_tail_follow_survives_ssh_drops_without_losing_or_repeating_lines(cli, node, repo,
                                                                         emulator):
    import sys

    n = 250
    prog = (f"import time\nfor i in range({n}):\n    print(f'line {{i}}', flush=True)\n"
            "    time.sleep(0.02)\n")
    r = in_repo(cli, repo, "launch", node, "--run-id", "drops", "--", "python3", "-c", prog)
    assert r.returncode == 0, r.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "tpuctl", "tail", node, "drops", "--follow", "-n", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env(), cwd=repo)
    drops = 0
    deadline = time.monotonic() + 8
    while follower.poll() is None and time.monotonic() < deadline:
        time.sleep(0.7)
        _drop(emulator, node)
        drops += 1
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    assert drops >= 3
    for w in range(4):
        seen = [int(m.group(1)) for m in re.finditer(rf"^\[w{w}\] line (\d+)$", out, re.M)]
        assert seen == list(range(n)), (w, len(seen))  # none lost, none repeated, in order


def listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every TCP socket listening in this network namespace."""
    import ipaddress

    out = set()
    for name, size in (("tcp", 4), ("tcp6", 16)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = fields[1].split(":")
            raw = bytes.fromhex(addr)  # host byte order, in 32-bit words
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            out.add((str(ip), int(port, 16)))
    return out


def test_up_pushes_a_recipes_secrets_that_never_leak(cli, tmp_path, emulator):
    """`secrets:` in a recipe: pushed by `up` (0600) before the job, which sees the exact
    value, and never in any process's argv, tpuctl's output or a log. (The README demo, the
    real JAX program through `up` twice, runs as written in tests/e2e/test_docs.py.)"""
    import hashlib
    import sys
    import threading

    proj = tmp_path / "demo"
    proj.mkdir()
    secret = "hf_" + "Zq9" * 10
    (proj / ".gitignore").write_text(".env\n")
    (proj / ".env").write_text(f"HF_TOKEN={secret}\n")
    (proj / "job.yaml").write_text(
        "name: qs-secrets\naccelerator: v6e-8\nsecrets: .env\n"
        "command: 'printf %s \"$HF_TOKEN\" | sha256sum'\n")
    git(proj, "init", "-q")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "demo")

    leaks: list[str] = []
    stop = False

    def audit_cmdlines() -> None:
        while not stop:
            for f in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if secret.encode() in f.read_bytes():
                        leaks.append(f.parent.name)
                except OSError:
                    pass
            time.sleep(0.05)

    t = threading.Thread(target=audit_cmdlines, daemon=True)
    t.start()
    try:
        run = subprocess.run([sys.executable, "-m", "tpuctl", "up", "job.yaml"],
                             capture_output=True, text=True, cwd=proj, env=cli.env(),
                             timeout=600, stdin=subprocess.DEVNULL)
    finally:
        stop = True
        t.join()
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert re.search(r"✓ secrets\s+done\s+1 keys", run.stderr)
        assert hashlib.sha256(secret.encode()).hexdigest() in run.stdout
        assert leaks == []
        assert secret not in run.stdout + run.stderr
        node_dir = next((emulator.state_dir / "nodes").glob("*qs-secrets"))
        for log in list(node_dir.glob("w*/home/.tpuctl/runs/*/worker*.log")) + list(
                node_dir.glob("w*/home/.tpuctl/logs/*.log")):
            assert secret not in log.read_text(errors="replace"), log
        for f in node_dir.glob("w*/home/.tpuctl/secrets.env"):
            assert oct(f.stat().st_mode & 0o777) == "0o600"
    finally:
        cli("down", "qs-secrets", "--yes")


def test_launch_force_kills_stale_tpu_holders(cli, node, repo, emulator):
    dev = worker_home(emulator, node, 3).parent / "dev" / "accel1"
    holder = subprocess.Popen(["bash", "-c", f"exec 3<{dev}; sleep 60"])
    try:
        wait_until(lambda: _holding(holder.pid, dev), bool)
        r = in_repo(cli, repo, "launch", node, "--run-id", "forced", "--force", "--replace",
                    "--", "true")
        assert r.returncode == 0, r.stderr
        assert holder.wait(timeout=10) == -9  # the stale holder was killed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    r = in_repo(cli, repo, "tail", node, "forced", "--follow")
    assert r.returncode == 0, r.stderr


def test_logs_fetch_copies_every_worker_log(cli, node, repo, tmp_path):
    r = in_repo(cli, repo, "launch", node, "--run-id", "fetch-me", "--", "bash", "-c",
                'for i in 1 2 3; do echo "w$TPUCTL_WORKER_ID line $i"; done')
    assert r.returncode == 0, r.stderr
    assert in_repo(cli, repo, "tail", node, "fetch-me", "--follow").returncode == 0
    r = in_repo(cli, repo, "logs", "fetch", node, "fetch-me", "--dest", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["missing_workers"] == [] and doc["exit_code"] == 0
    for i in range(4):
        log = tmp_path / node / "fetch-me" / f"worker{i}.log"
        assert log.read_text() == "".join(f"w{i} line {n}\n" for n in (1, 2, 3))
        assert log.stat().st_mode & 0o777 == 0o600  # job logs are their user's only
    # by default: ~/.tpuctl/logs, never the repository (the next sync would see the files)
    r = in_repo(cli, repo, "logs", "fetch", node, "fetch-me")
    assert r.returncode == 0, r.stderr
    home_logs = cli.home / ".tpuctl" / "logs" / node / "fetch-me"
    assert r.stdout.strip() == str(home_logs)
    assert (home_logs / "worker3.log").read_text() == "".join(f"w3 line {n}\n" for n in (1, 2, 3))
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_logs_fetch_refuses_a_run_id_from_a_worker_that_leads_outside_dest(cli, node, repo,
                                                                          emulator, tmp_path):
    home = worker_home(emulator, node, 0)
    latest = home / ".tpuctl" / "runs" / "latest"
    before = latest.read_text() if latest.exists() else None
    latest.parent.mkdir(parents=True, exist_ok=True)
    (home / "x").mkdir(exist_ok=True)
    (home / "x" / "worker0.log").write_text("not yours\n")
    latest.write_text("../../x\n")  # what a compromised worker could answer
    dest = tmp_path / "a" / "b" / "dest"
    try:
        r = in_repo(cli, repo, "logs", "fetch", node, "--dest", str(dest))
        assert r.returncode == 1, r.stderr
        assert "w0 answered an invalid run id '../../x'" in r.stderr
        assert "Traceback" not in r.stderr
        assert list(tmp_path.iterdir()) == []  # nothing written, not even --dest
    finally:
        if before is None:
            latest.unlink()
        else:
            latest.write_text(before)


def _admin(emulator, node: str, verb: str) -> None:
    emulator.admin("POST", f"projects/local-project/locations/local-a/nodes/{node}:{verb}")


def _following(node: str, run_id: str) -> bool:
    """A worker of the node runs follow.sh on this run (an emulated worker: a process here)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(w.endswith(b"/follow.sh") for w in words) and run_id.encode() in words \
                and f"{node}/w".encode() in b" ".join(words):
            return True
    return False


def test_preemption_during_tail_follow_exits_6_and_gc_collects_it(cli, repo, emulator):
    import sys

    name = "preempt-me"
    assert cli("create", name, "--type", "v6e-16").returncode == 0
    assert in_repo(cli, repo, "sync", name).returncode == 0
    r = in_repo(cli, repo, "launch", name, "--run-id", "doomed", "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    follower = subprocess.Popen(
        [sys.executable, "-m", "tpuctl", "tail", name, "doomed", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env(), cwd=repo)
    # preempt once the follow is under way: follow.sh streaming the run's log on a worker
    wait_until(lambda: _following(name, "doomed"), bool, timeout=60)
    _admin(emulator, name, "preempt")
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 6, err
    # "was preempted while following" or, when the lost connection sends the cached worker
    # list back to the API first, "is PREEMPTED": either way named, exit 6
    assert "preempted" in err.lower() and name in err
    r = in_repo(cli, repo, "status", name)
    assert r.returncode == 6 and "PREEMPTED" in r.stderr
    # gc: the preempted node and an expired one, never an unmanaged one
    r = cli("create", "expiring", "--type", "v6e-8", "--ttl", "1s")
    assert r.returncode == 0, r.stderr

    def candidates() -> dict[str, str]:
        r = cli("gc", "--dry-run", "--json")
        return {c["name"]: c["reason"] for c in json.loads(r.stdout)["candidates"]}

    names = wait_until(candidates, lambda n: "expiring" in n, timeout=20)
    assert names.get(name) == "preempted" and "expired" in names.get("expiring", "")
    assert "shared-v6e16" not in names and NODE not in names
    r = cli("gc")
    assert r.returncode == 2 and "--yes" in r.stderr  # no prompt off a terminal
    r = cli("gc", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["deleted"]) >= {name, "expiring"}
    assert cli("describe", name).returncode == 3
    assert cli("describe", "expiring").returncode == 3


def test_up_recreates_a_preempted_node_and_keeps_every_attempts_logs(cli, repo, emulator,
                                                                     tmp_path):
    name = "recreate-me"
    recipe = repo / "recreate.yaml"
    recipe.write_text(
        f"name: {name}\naccelerator: v6e-8\n"
        "command: 'echo \"attempt ${TPUCTL_RESTART_COUNT:-0}\"; "
        "if [ \"${TPUCTL_RESTART_COUNT:-0}\" = 0 ]; then sleep 300; fi; echo finished'\n")
    git(repo, "add", "recreate.yaml")
    git(repo, "commit", "-qm", "recreate recipe")
    run = UpInBackground(cli, "recreate.yaml", repo, marker="attempt 0")
    proc = run.proc
    try:
        assert run.seen.wait(300) and run.marked, "the first attempt never started"
        _admin(emulator, name, "preempt")
        out, err = run.finish()
        assert proc.returncode == 0, err
        assert "[w0] attempt 1" in out and "[w0] finished" in out
        assert re.search(r"✓ preempted\s+recreate", err)
        logs = sorted((cli.home / ".tpuctl" / "logs" / name).glob("*/worker0.log"))
        texts = [p.read_text() for p in logs]
        assert any("attempt 0" in t for t in texts) and any("attempt 1" in t for t in texts)
    finally:
        if proc.poll() is None:
            proc.kill()
        cli("down", name, "--yes")


def test_launch_timeout_is_enforced_on_the_workers(cli, node, repo, emulator):
    r = in_repo(cli, repo, "launch", node, "--run-id", "too-long", "--timeout", "2",
                "--replace", "--", "bash", "-c", "echo started; sleep 300")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = in_repo(cli, repo, "tail", node, "too-long", "--follow")
    assert r.returncode == 5, r.stderr
    assert time.monotonic() - t0 < 60
    assert "exceeded its --timeout" in r.stderr and "[w0] started" in r.stdout
    st = json.loads(in_repo(cli, repo, "status", node, "too-long", "--json").stdout)
    assert st["state"] == "timed-out"
    for i in range(4):
        pgid = int((worker_home(emulator, node, i) / ".tpuctl/runs/too-long/pgid").read_text())
        # the watchdog leaves within a poll of the job's end
        wait_until(lambda pgid=pgid: _pgid_members(pgid), lambda m: m == [], timeout=5)
