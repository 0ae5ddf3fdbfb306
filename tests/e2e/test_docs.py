"""The docs' shell blocks run as written, so they cannot rot: the README's demo, then every
block of docs/quickstart.md in one shell (as a user types them into one terminal), from a
copy of this repository in a fresh HOME, on the emulator the docs start themselves; and
docs/ci.md's snippet exits with the failing step's code under `set -e`.

This is also the end-to-end test of the README demo: the real JAX program as 4 processes x 4
devices through `up`, and a second `up` that skips what is done."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.e2e.test_loop import git, listening_sockets

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def bash_blocks(doc: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", doc.read_text(), re.S | re.M)


def _copy_of_this_repository(dest: Path) -> Path:
    """The tracked files as they are in the working tree, committed into a fresh repository
    (what a clone of this commit holds, without fetching anything)."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "copy")
    return dest


def _user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TPUCTL_", "CLOUDSDK_", "GOOGLE_", "VIRTUAL_ENV"))}
    # the suite's rule: no connection daemon outlives a test
    env.update(HOME=str(home), NO_GCE_CHECK="True", CLOUDSDK_CONFIG=str(home / "gcloud"),
               COLUMNS="200", TPUCTL_PERSIST_CONNECTIONS="0")
    return env


def test_readme_demo_and_quickstart_run_as_written(tmp_path: Path) -> None:
    repo = _copy_of_this_repository(tmp_path / "tpuctl")
    home = tmp_path / "home"
    home.mkdir()
    # the README's other block is `bash scripts/test.sh`: this very suite
    demo = [b for b in bash_blocks(ROOT / "README.md") if "tpuctl up" in b]
    quickstart = bash_blocks(ROOT / "docs" / "quickstart.md")
    assert len(demo) == 1 and len(quickstart) >= 4
    script = "set -euo pipefail\n" + "".join(
        f"echo '@@ {name}'; echo '@@ {name}' >&2\n{block}" for name, block in
        [("README demo", demo[0]), *((f"quickstart block {i + 1}", b)
                                     for i, b in enumerate(quickstart))])
    afterwards = re.search(r"\(Afterwards: `([^`]+)`", (ROOT / "README.md").read_text())
    assert afterwards, "the README says how to clean up"
    env = _user_env(home)
    listening: set[tuple[str, int]] = set()
    done = threading.Event()

    def watch_sockets() -> None:  # JAX's coordinator, while the jobs run
        while not done.wait(0.05):
            listening.update(listening_sockets())

    watcher = threading.Thread(target=watch_sockets, daemon=True)
    watcher.start()
    frames: list[dict] = []  # `tpuctl top quickstart --once --json` while the demo trains
    topper = threading.Thread(target=_watch_top, args=(env, home, done, frames), daemon=True)
    topper.start()
    try:
        try:
            run = subprocess.run(["bash", "-c", script], cwd=repo, env=env,
                                 capture_output=True, text=True, timeout=1200,
                                 stdin=subprocess.DEVNULL)
        finally:
            done.set()
            watcher.join()
            topper.join(60)
        assert run.returncode == 0, run.stderr[-4000:]
        out, err = run.stdout, run.stderr
        demo_out = out[:out.index("@@ quickstart block 1")]
        assert "[w0] processes=4 devices=16 local_devices=4 backend=cpu" in demo_out
        losses = [float(x) for x in re.findall(r"^\[w0\] step=\d+ loss=([0-9.]+)", demo_out,
                                               re.M)]
        assert len(losses) >= 3 and losses[-1] < losses[0] / 2
        assert out.count("[w0] checkpoint written to") == 3  # README, step 3, step 4
        # the node outlives the run: `up` says so, with its price (none for the emulator's)
        assert "quickstart is still up (price unknown): `tpuctl down quickstart --yes`" in \
            err[:err.index("@@ quickstart block 1")]
        # step 3, the second `up`: "the node is reused, sync and bootstrap are skipped"
        step3 = err[err.index("@@ quickstart block 3"):err.index("@@ quickstart block 4")]
        assert re.search(r"✓ create\s+reused", step3) and re.search(r"✓ sync\s+skipped", step3)
        assert re.search(r"✓ bootstrap\s+cached", step3)
        assert re.search(r"✓ run\s+done\s+exit 0", step3)
        assert out.count("[w0] processes=4 devices=16 local_devices=4 backend=cpu") == 2
        # step 4, one step at a time on a v6e-8: one process, eight devices
        assert "[w0] processes=1 devices=8 local_devices=8 backend=cpu" in out
        run_id = re.search(r"^node my-task READY; run (my-task-\S+): succeeded$", out, re.M)
        assert run_id, out[-2000:]
        assert re.search(rf"^{run_id.group(1)}\s+succeeded\s+\S+\s+0$", out, re.M)  # runs
        fetched = home / ".tpuctl" / "logs" / "my-task" / run_id.group(1) / "worker0.log"
        assert "processes=1 devices=8" in fetched.read_text()
        # nothing written into the repository (the .env the docs create is git-ignored)
        assert git(repo, "status", "--porcelain") == ""
        # top saw every worker train (CPU and the emulated chips' duty cycle), then fall quiet
        busy = next((i for i, f in enumerate(frames) if _training(f)), None)
        assert busy is not None, [_summary(f) for f in frames]
        assert any(_quiet(f) for f in frames[busy + 1:]), [_summary(f) for f in frames]
        # the demo's JAX coordinator listened on worker 0's own address, never on every
        # interface (JAX_COORDINATOR_BIND_ADDRESS)
        from tpuctl.ops.launch import coordinator_port

        demo_err = err[:err.index("@@ quickstart block 1")]
        port = coordinator_port(re.search(r"✓ launch\s+done\s+run (\S+)", demo_err).group(1))
        described = subprocess.run([str(repo / ".venv" / "bin" / "tpuctl"), "describe",
                                    "quickstart", "--json"], cwd=repo, env=env,
                                   capture_output=True, text=True, timeout=60)
        w0 = json.loads(described.stdout)["workers"][0]["ip"]
        assert (w0, port) in listening, sorted(p for p in listening if p[1] == port)
        assert not {("0.0.0.0", port), ("::", port)} & listening
    finally:
        clean = subprocess.run(["bash", "-c", f"export PATH={repo}/.venv/bin:$PATH; "
                                f"{afterwards.group(1)}"], cwd=repo, env=env,
                               capture_output=True, text=True, timeout=300)
        _kill_leftover_emulator(home)
    assert clean.returncode == 0, clean.stderr


def _training(frame: dict) -> bool:
    return len(frame["workers"]) == 4 and all(
        w["state"] == "running" and (w["run_cpu_pct"] or 0) > 0
        and w["tpu"]["source"] == "libtpu" and w["tpu"]["chips"]
        and all(c["duty_pct"] > 0 for c in w["tpu"]["chips"]) for w in frame["workers"])


def _quiet(frame: dict) -> bool:
    return all(w["state"] != "running" and w["run_cpu_pct"] is None
               and not w["tpu"]["chips"] for w in frame["workers"])


def _summary(frame: dict) -> list:
    return [(w["state"], w["run_cpu_pct"], [c["duty_pct"] for c in w["tpu"]["chips"]])
            for w in frame["workers"]]


def _watch_top(env: dict[str, str], home: Path, done: threading.Event, frames: list) -> None:
    """Ask `top` for a frame every few seconds (the emulator the docs start, found as a user's
    tpuctl finds it) until it has seen the demo train and then stop."""
    while not done.wait(3.0):
        r = subprocess.run([sys.executable, "-m", "tpuctl", "top", "quickstart", "--once",
                            "--json"], env=env, cwd=home, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            continue  # no emulator, or no node yet
        frames.append(json.loads(r.stdout))
        busy = [i for i, f in enumerate(frames) if _training(f)]
        if busy and any(_quiet(f) for f in frames[busy[0] + 1:]):
            return


def _kill_leftover_emulator(home: Path) -> None:
    """Only if the docs' own `tpuctl emulator stop` did not run: by the pid it wrote."""
    import signal

    info = home / ".tpuctl" / "emulator" / "emulator.json"
    try:
        os.kill(int(json.loads(info.read_text())["pid"]), signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


def test_the_ci_snippet_exits_with_the_failing_steps_code(cli: Cli, tmp_path: Path) -> None:
    (block,) = bash_blocks(ROOT / "docs" / "ci.md")
    env = cli.env(CI_PIPELINE_ID="42", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # no recipes/nightly.yaml here: `up` fails before creating anything (exit 2), and the
    # clean-up's `down` then finds no node (exit 3): the script must still exit 2
    r = subprocess.run(["bash", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert "recipe 'recipes/nightly.yaml' not found" in r.stderr
    assert "nightly-42" in r.stderr  # the clean-up ran
