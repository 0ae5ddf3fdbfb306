"""`--dry-run`: recording adapters that change nothing and say what would be sent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import fake_ports
from tpuctl.cli.main import run
from tpuctl.dryrun import recording_ports
from tpuctl.dryrun.cloud import RecordingCloud
from tpuctl.dryrun.transcript import ApiCall, Transcript, WorkerCall
from tpuctl.model import NetworkSpec, NodeSpec

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("TPUCTL_PROJECT", "TPUCTL_ZONE", "CLOUDSDK_CORE_PROJECT",
                "CLOUDSDK_COMPUTE_ZONE", "CI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", DEAD)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_create_needs_no_api_and_changes_nothing(env: Path, capsys):
    assert run(["create", "x", "--type", "v6e-16", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "POST /v2/projects/local-project/locations/local-a/nodes?nodeId=x" in out
    for field in ('"acceleratorType": "v6e-16"', '"runtimeVersion": "v2-alpha-tpuv6e"',
                  '"managed-by": "tpuctl"', '"tpuctl-task": "x"'):
        assert field in out
    assert "1 API request(s)" in err
    assert list(env.iterdir()) == []  # no key made, nothing pinned or cached


def test_dry_run_json_is_the_list_of_steps(env: Path, capsys):
    assert run(["create", "x", "--type", "v6e-8", "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (step,) = doc["dry_run"]
    assert step["api"]["method"] == "POST" and step["api"]["body"]["acceleratorType"] == \
        "v6e-8"


def _git(repo: Path, *args: str) -> None:
    e = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
         "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=e)


def test_up_shows_secrets_and_env_by_name_only(env: Path, capsys):
    repo = env.parent / "proj"
    repo.mkdir()
    (repo / "job.yaml").write_text(
        "accelerator: v6e-16\nsecrets: .env\nenv: {MODE: env-value-4711}\n"
        "command: [python, job.py, --token-file, x]\n")
    (repo / ".gitignore").write_text(".env\n")
    (repo / ".env").write_text("HF_TOKEN=hf_SuperSecret123\nWANDB_KEY='w a n d b'\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "c")
    assert run(["up", str(repo / "job.yaml"), "--dry-run", "--run-id", "r"]) == 0
    out, err = capsys.readouterr()
    assert "secrets.sh push" in out and "secrets: HF_TOKEN WANDB_KEY (values not shown)" in out
    for value in ("hf_SuperSecret123", "w a n d b", "env-value-4711"):
        assert value not in out + err
    assert "MODE" in out  # the job's env: names only
    assert not (env / ".tpuctl").exists()


def test_on_an_existing_node_reads_happen_and_nothing_changes():
    ports, cloud, fleet = fake_ports()
    cloud.add_node("n1", accelerator="v6e-16")
    cloud.add_node("gone", state="PREEMPTED")
    t = Transcript()
    dry = recording_ports(ports, t, read_api=True)
    from tpuctl.ops.gc import GcRequest, gc
    from tpuctl.ops.launch import LaunchRequest, launch_node
    from tpuctl.ops.nodes import DeleteRequest, delete_node

    launch_node(dry, LaunchRequest("n1", command=("python", "x.py"), run_id="r1"))
    delete_node(dry, DeleteRequest("n1", yes=True))
    assert gc(dry, GcRequest(yes=True)).deleted == ("gone",)
    assert cloud.changes() == [] and fleet.script_calls == []  # the real ports: untouched
    steps = [s.method + " " + s.path if isinstance(s, ApiCall) else f"{s.where} {s.line}"
             for s in t.steps]
    assert steps[0].startswith("PATCH /v2/projects/proj/locations/zone-a/nodes/n1?updateMask")
    assert steps[1] == "w0-3 install tpuctl's worker scripts (~/.tpuctl/bin/<content hash>/)"
    # doctor's fast subset beside launch's checks (the run's coordinator port from every
    # worker), then the checks and the starts
    from tpuctl.ops.launch import coordinator_port

    w0 = cloud.get_node("n1").workers[0].ip
    assert steps[2] == f"w0-3 doctor.sh - {w0}:{coordinator_port('r1')} 1"
    assert [s.split(" ", 2)[1] for s in steps[3:11]] == ["launch.sh"] * 8
    assert steps[11:] == ["DELETE /v2/projects/proj/locations/zone-a/nodes/n1",
                          "DELETE /v2/projects/proj/locations/zone-a/nodes/gone"]
    patch = t.steps[0]
    assert isinstance(patch, ApiCall) and patch.body == {
        "metadata": {"ssh-keys": "alice:ssh-ed25519 AAAAfake tpuctl"}}


def test_identical_calls_in_a_row_are_one_line():
    t = Transcript()
    for i in range(4):
        t.add(WorkerCall((i,), "bootstrap", ("start", "h"), ("requirements: 1 line(s)",)))
    t.add(WorkerCall((0,), "launch", ("check", "r", "0"), ()))
    t.add(WorkerCall((1,), "launch", ("check", "r", "1"), ()))
    assert [(s.where, s.line) for s in t.steps if isinstance(s, WorkerCall)] == [
        ("w0-3", "bootstrap.sh start h"), ("w0", "launch.sh check r 0"),
        ("w1", "launch.sh check r 1")]


# -- the recorded requests are the ones google-cloud-tpu's REST transport sends ----------------
class _Client:
    """Captures what GcpCloud hands the client, as request dicts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, verb: str) -> Any:
        def call(request: dict[str, Any]) -> Any:
            self.calls.append((verb, request))

            class Op:
                class operation:  # the client's attribute name
                    name = "operations/1"

            return Op()

        return call


def _rest(verb: str, request: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(METHOD, path?query, body) as the REST transport builds them."""
    from urllib.parse import urlencode

    from google.api_core import path_template
    from google.cloud import tpu_v2
    from google.cloud.tpu_v2.services.tpu.transports.rest_base import _BaseTpuRestTransport
    from google.protobuf import json_format

    names = {"create_node": ("CreateNode", tpu_v2.CreateNodeRequest),
             "create_queued_resource": ("CreateQueuedResource",
                                        tpu_v2.CreateQueuedResourceRequest),
             "delete_node": ("DeleteNode", tpu_v2.DeleteNodeRequest),
             "delete_queued_resource": ("DeleteQueuedResource",
                                        tpu_v2.DeleteQueuedResourceRequest),
             "update_node": ("UpdateNode", tpu_v2.UpdateNodeRequest)}
    base, cls = names[verb]
    options = getattr(_BaseTpuRestTransport, f"_Base{base}")._get_http_options()
    t = path_template.transcode(options, cls.pb(cls(request)))
    body = None
    if "body" in t:
        body = json.loads(json_format.MessageToJson(t["body"], use_integers_for_enums=True))
    query = json.loads(json_format.MessageToJson(t["query_params"]))
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
    path = t["uri"] + (f"?{urlencode(query)}" if query else "")
    return t["method"].upper(), path, body


SPEC = NodeSpec(name="n1", accelerator_type="v6e-16", runtime_version="v2-alpha-tpuv6e",
                labels={"managed-by": "tpuctl", "tpuctl-task": "n1"},
                metadata={"ssh-keys": "alice:ssh-ed25519 AAAA tpuctl"},
                description="tpuctl task n1")


@pytest.mark.parametrize(("verb", "args"), [
    ("create_node", (SPEC,)), ("create_node", (NodeSpec(**{**SPEC.__dict__, "spot": True}),)),
    ("create_queued_resource", (SPEC,)),
    ("create_queued_resource", (NodeSpec(**{**SPEC.__dict__, "spot": True}),)),
    ("create_node", (NodeSpec(**{**SPEC.__dict__,
                                 "network": NetworkSpec(external_ips=False)}),)),
    ("create_node", (NodeSpec(**{**SPEC.__dict__, "network": NetworkSpec(
        external_ips=False, network="vpc-a", subnetwork="projects/p/regions/r/subnetworks/s",
        tags=("tpu-ssh", "b"))}),)),
    ("create_queued_resource", (NodeSpec(**{**SPEC.__dict__, "network": NetworkSpec(
        network="vpc-a", tags=("x",))}),)),
    ("delete_node", ("n1",)), ("delete_queued_resource", ("n1",)),
])
def test_a_recorded_request_is_what_the_client_would_send(verb, args):
    from tpuctl.cloud.gcp import GcpCloud

    client = _Client()
    GcpCloud("proj", "zone-a", client=client).__getattribute__(verb)(*args)
    ((sent_verb, request),) = client.calls
    t = Transcript()
    fake, _, _ = fake_ports()
    RecordingCloud(fake.cloud.in_zone("zone-a"), t, read_api=False).__getattribute__(verb)(*args)
    (call,) = t.steps
    assert isinstance(call, ApiCall)
    assert (call.method, call.path, call.body) == _rest(sent_verb, request)


def test_the_recorded_metadata_change_is_the_client_s_update_request():
    from tpuctl.cloud.gcp import GcpCloud

    client = _Client()
    GcpCloud("proj", "zone-a", client=client).set_metadata("n1", {"ssh-keys": "a:k"})
    ((verb, request),) = client.calls
    method, path, body = _rest(verb, request)
    ports, cloud, _ = fake_ports()
    cloud.add_node("n1")
    t = Transcript()
    RecordingCloud(cloud, t, read_api=True).set_metadata("n1", {"ssh-keys": "a:k"})
    (call,) = t.steps
    assert isinstance(call, ApiCall) and (call.method, call.path) == (method, path)
    assert body is not None and call.body == {"metadata": body["metadata"]}
