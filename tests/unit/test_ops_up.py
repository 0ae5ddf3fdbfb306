"""`up`'s step sequence, what a second `up` skips, and the preemption policy with its
budget, on fake ports (a real git repository for the recipe)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fakes import fake_ports
from tpuctl.errors import PreemptedError, UsageError
from tpuctl.ops.prepared import prepare_file
from tpuctl.ops.up import Step, UpEvents, UpOptions, UpRequest, up, up_recipe


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.tpuctl/logs of up's lines
    root = tmp_path / "proj"
    root.mkdir()
    (root / "train.yaml").write_text(
        "name: job\naccelerator: v6e-16\nrequirements: req.txt\nsecrets: .env\n"
        "env: {A: '1'}\ncommand: [python, train.py]\n")
    (root / "req.txt").write_text("numpy\n")
    (root / ".gitignore").write_text(".env\n")
    (root / ".env").write_text("TOKEN=hf_secret\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first")
    return root


class Recorded(UpEvents):
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.lines: list[tuple[int, str]] = []

    def step(self, s: Step) -> None:
        self.steps.append(s)

    def line(self, index: int, line: str) -> None:
        self.lines.append((index, line))

    @property
    def outcomes(self) -> list[str]:
        return [f"{s.name} {s.outcome}" for s in self.steps]


def test_the_steps_in_order_then_a_second_up_skips_what_is_done(repo):
    ports, cloud, fleet = fake_ports()
    events = Recorded()
    result = up_recipe(ports, UpRequest(repo / "train.yaml"), events)
    assert events.outcomes == ["create done", "sync done", "secrets done", "bootstrap done",
                               "launch done", "run done"]
    assert result.exit_code == 0 and result.run_id.startswith("job-")
    assert fleet.scripts() == ["sync head", "sync bundle", "secrets push", "bootstrap start",
                               "doctor", "launch check", "launch start", "follow"]
    assert fleet.worker("job", 3).secrets == ["TOKEN"]
    assert (0, "step=1 loss=0.5") in events.lines
    assert fleet.launched_env[0]["A"] == "1" and fleet.launched_env[3]["JAX_PROCESS_ID"] == "3"

    again = Recorded()
    up_recipe(ports, UpRequest(repo / "train.yaml"), again)
    assert again.outcomes == ["create reused", "sync skipped", "secrets done",
                              "bootstrap cached", "launch done", "run done"]
    assert cloud.changes() == ["create_node zone-a job"]  # one node, created once


def test_the_job_s_exit_code_is_up_s(repo):
    ports, _, fleet = fake_ports()
    fleet.job_exit = {2: 7}
    events = Recorded()
    result = up_recipe(ports, UpRequest(repo / "train.yaml"), events)
    assert result.exit_code == 7
    assert events.steps[-1].outcome == "failed" and "first failure on w2" in \
        events.steps[-1].detail


def test_detach_returns_after_launch(repo):
    ports, _, fleet = fake_ports()
    result = up_recipe(ports, UpRequest(repo / "train.yaml", detach=True))
    assert result.exit_code is None and "follow" not in fleet.scripts()


def test_everything_local_is_checked_before_any_call(repo):
    ports, cloud, _ = fake_ports()
    for bad in (UpRequest(repo / "train.yaml", on_preempt="retry"),
                UpRequest(repo / "train.yaml", max_recreates=-1),
                UpRequest(repo / "train.yaml", run_id="../x"),
                UpRequest(repo / "missing.yaml"),
                UpRequest(repo / "train.yaml", name="Bad_Name")):
        with pytest.raises(UsageError):
            up_recipe(ports, bad)
    (repo / "req.txt").write_text("changed\n")  # a tracked file changed: refused
    with pytest.raises(UsageError, match="uncommitted changes"):
        up_recipe(ports, UpRequest(repo / "train.yaml"))
    assert cloud.calls == []


def _preempt_while_following(cloud, times: int):
    """A follow that finds its node preempted (the first `times` runs only)."""
    left = [times]

    def on_follow(node, i, args, payload):
        if left[0] <= 0:
            return None
        if i == 3:
            left[0] -= 1
        cloud.set_state(node, "PREEMPTED")
        return None, "", []  # the connection is lost

    return on_follow


def test_preemption_fails_with_exit_6_by_default(repo):
    ports, cloud, fleet = fake_ports()
    fleet.on_follow = _preempt_while_following(cloud, 1)
    with pytest.raises(PreemptedError, match="preempted"):
        up_recipe(ports, UpRequest(repo / "train.yaml"))
    assert cloud.changes() == ["create_node zone-a job"]  # not deleted: gc or down does


def test_recreate_deletes_creates_and_reruns_with_the_restart_count(repo):
    ports, cloud, fleet = fake_ports()
    fleet.on_follow = _preempt_while_following(cloud, 2)
    events = Recorded()
    result = up(ports, prepare_file(repo / "train.yaml"),
                UpOptions(on_preempt="recreate", max_recreates=2, run_id="r",
                          log_dir=repo.parent / "logs"), events)
    assert result.exit_code == 0 and result.run_id == "r-r2"
    assert [o for o in events.outcomes if o.startswith("preempted")] == \
        ["preempted recreate", "preempted recreate"]
    last = [s for s in events.steps if s.name == "preempted"][-1]
    assert "was preempted" in last.detail and "recreating (2/2)" in last.detail
    assert cloud.changes() == ["create_node zone-a job", "delete_node zone-a job",
                               "create_node zone-a job", "delete_node zone-a job",
                               "create_node zone-a job"]
    restarts = [env.get("TPUCTL_RESTART_COUNT") for env in fleet.launched_env[::4]]
    assert restarts == [None, "1", "2"]


def test_the_recreate_budget_is_a_budget(repo):
    ports, cloud, fleet = fake_ports()
    fleet.on_follow = _preempt_while_following(cloud, 3)
    with pytest.raises(PreemptedError):
        up(ports, prepare_file(repo / "train.yaml"),
           UpOptions(on_preempt="recreate", max_recreates=2, log_dir=repo.parent / "logs"))
    assert cloud.changes().count("create_node zone-a job") == 3  # the first and 2 recreates


def test_every_attempt_s_lines_are_kept_locally(repo):
    ports, cloud, fleet = fake_ports()
    logs = repo.parent / "logs"
    up(ports, prepare_file(repo / "train.yaml"), UpOptions(run_id="keep", log_dir=logs))
    assert (logs / "job" / "keep" / "worker0.log").read_text() == "step=1 loss=0.5\n"
    assert oct((logs / "job" / "keep" / "worker0.log").stat().st_mode & 0o777) == "0o600"


def test_a_serving_recipe_waits_for_ready_and_does_not_follow(repo):
    model = Path(__file__).resolve().parents[2] / "recipes/models/tiny-standin/config.json"
    (repo / "model").mkdir()
    (repo / "model" / "config.json").write_text(model.read_text())
    (repo / "serve.yaml").write_text("accelerator: v6e-16\nserve: {model: model, cpu: true}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "serve")
    ports, _, fleet = fake_ports()
    events = Recorded()
    result = up_recipe(ports, UpRequest(repo / "serve.yaml", run_id="s"), events)
    assert events.outcomes[-2:] == ["launch done", "ready done"]
    assert result.url == "http://10.0.0.2:30000" and result.exit_code is None
    assert fleet.scripts()[-3:] == ["launch start", "status", "probe"]


def test_a_run_that_leaves_its_node_up_says_what_it_costs(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "tpuctl").mkdir(parents=True)
    (tmp_path / "cfg" / "tpuctl" / "prices.yaml").write_text(
        "prices:\n  v6e:\n    zone: {on_demand: 3.0}\n")
    ports, _, _ = fake_ports()
    result = up_recipe(ports, UpRequest(repo / "train.yaml"), Recorded())
    assert result.left_up is not None and result.left_up.amount == 48.0  # 16 chips × 3.0
    assert result.to_dict()["left_up_price_per_hour"]["amount"] == 48.0
    detached = up_recipe(ports, UpRequest(repo / "train.yaml", detach=True))
    assert detached.left_up is None and "left_up_price_per_hour" not in detached.to_dict()


def test_a_recipe_s_network_settings_reach_the_create_request(repo):
    (repo / "net.yaml").write_text(
        "name: net\naccelerator: v6e-8\ninternal_ips: true\nnetwork: vpc-a\n"
        "subnetwork: projects/p/regions/r/subnetworks/s\ntags: [tpu-ssh, 'a,b']\n"
        "command: [python, train.py]\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "net")
    ports, cloud, _ = fake_ports()
    # no external IPs and no way in: refused before any SSH, after the create
    with pytest.raises(UsageError, match="no external IP"):
        up_recipe(ports, UpRequest(repo / "net.yaml", detach=True))
    net = cloud.world.specs["net"].network
    assert (net.external_ips, net.network, net.tags) == (False, "vpc-a", ("tpu-ssh", "a", "b"))
    (repo / "bad.yaml").write_text("accelerator: v6e-8\ntags: [Bad]\ncommand: x\n")
    with pytest.raises(UsageError, match=r"field 'tags': value 'Bad': not a network tag"):
        up_recipe(ports, UpRequest(repo / "bad.yaml"))
