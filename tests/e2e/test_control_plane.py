"""create / list / describe / delete / exec / ssh through the real CLI against the emulator."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, tpu_client, wait_until
from tpuctl.naming import owner_label

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slice16(cli: Cli) -> dict:
    """One v6e-16 (4 workers) shared by the read-only tests of this module."""
    r = cli("create", "shared-v6e16", "--type", "v6e-16", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    yield data
    cli("delete", "shared-v6e16", "--yes")


def test_create_gives_a_managed_ready_slice_with_four_reachable_workers(slice16, cli):
    node = slice16["node"]
    assert slice16["created"] is True
    assert node["state"] == "READY"
    assert node["accelerator_type"] == "v6e-16"
    assert node["runtime_version"] == "v2-alpha-tpuv6e"  # picked by generation
    assert node["labels"]["managed-by"] == "tpuctl"
    assert node["labels"]["tpuctl-task"] == "shared-v6e16"
    assert node["owner"] == node["labels"]["tpuctl-owner"] == owner_label(getpass.getuser())
    ips = [w["ip"] for w in node["workers"]]
    assert len(ips) == 4 and len(set(ips)) == 4
    assert all(ip.startswith("127.") for ip in ips)
    r = cli("exec", "shared-v6e16", "--", "bash", "-c", 'echo "id=$TPU_WORKER_ID home=$HOME"')
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stdout.splitlines())
    assert [ln.split()[0] for ln in lines] == ["[w0]", "[w1]", "[w2]", "[w3]"]
    homes = {ln.split("home=")[1] for ln in lines}
    assert len(homes) == 4  # each worker has its own home directory
    for ln in lines:
        w = ln[2]
        assert f"id={w} " in ln  # output attributed to the worker that printed it
    assert "4/4 workers ok" in r.stderr


def test_create_again_reuses_the_node(slice16, cli):
    r = cli("create", "shared-v6e16", "--type", "v6e-16", "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["created"] is False
    assert [w["ip"] for w in again["node"]["workers"]] == [
        w["ip"] for w in slice16["node"]["workers"]]


def test_describe_and_list(slice16, cli):
    r = cli("describe", "shared-v6e16", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["name"] == "shared-v6e16" and len(d["workers"]) == 4
    assert "metadata" not in d  # ssh keys are not part of the JSON contract
    r = cli("list", "--json")
    assert "shared-v6e16" in [n["name"] for n in json.loads(r.stdout)]
    r = cli("describe", "shared-v6e16")  # human form, piped: plain text
    assert "w3" in r.stdout and "v6e-16" in r.stdout and "\x1b[" not in r.stdout


def test_exec_one_failing_worker_sets_exit_code_and_summary_names_it(slice16, cli):
    script = 'if [ "$TPU_WORKER_ID" = 2 ]; then echo boom >&2; exit 7; fi; echo fine'
    r = cli("exec", "shared-v6e16", "--", "bash", "-c", script)
    assert r.returncode == 7
    assert "[w2] boom" in r.stderr
    assert r.stdout.count("fine") == 3
    assert "w2 exit 7" in r.stderr and "3/4 workers ok" in r.stderr
    r = cli("exec", "shared-v6e16", "--json", "--", "bash", "-c", script)
    assert r.returncode == 7
    doc = json.loads(r.stdout)
    assert [w["exit_code"] for w in doc["workers"]] == [0, 0, 7, 0]


def test_exec_worker_selection(slice16, cli):
    r = cli("exec", "shared-v6e16", "--worker", "0,2-3", "--", "bash", "-c", "echo $TPU_WORKER_ID")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(["[w0]", "0", "[w2]", "2", "[w3]", "3"])
    r = cli("exec", "shared-v6e16", "--worker", "4", "--", "true")
    assert r.returncode == 2 and "worker 4 does not exist" in r.stderr


def test_exec_hostile_arguments_arrive_byte_exact_and_are_never_executed(slice16, cli, tmp_path):
    marker = tmp_path / "pwned"
    args = [
        "it's \"quoted\"",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        "line1\nline2",
        "--leading-dash",
        "ünïcödé ✓",
        "%s %d 100%",
        "",
        "a\tb  c",
        "$HOME ${PATH} \\",
    ]
    code = "import json,sys; print(json.dumps(sys.argv[1:]))"
    r = cli("exec", "shared-v6e16", "--worker", "1", "--", "python3", "-c", code, *args)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("[w1] ")
    assert json.loads(line[5:]) == args
    assert not marker.exists()


def test_exec_timeout_on_a_hanging_command(slice16, cli):
    t0 = time.monotonic()
    r = cli("exec", "shared-v6e16", "--worker", "0", "--timeout", "1", "--", "sleep", "300")
    assert r.returncode == 5
    assert time.monotonic() - t0 < 30
    assert "timed out" in r.stderr


def test_ssh_config_works_with_plain_openssh(slice16, cli, tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    r = cli("ssh-config", "shared-v6e16")
    assert r.returncode == 0, r.stderr
    assert "Host shared-v6e16-w3" in r.stdout
    cfg = tmp_path / "ssh_config"
    cfg.write_text(r.stdout)
    p = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "shared-v6e16-w2",
                        "echo", "worker=$TPU_WORKER_ID"],
                       capture_output=True, text=True, timeout=60, env=cli.env())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "worker=2"


def test_ssh_runs_a_command_on_the_chosen_worker(slice16, cli):
    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    # as with OpenSSH, the words after -- are joined by spaces and run by the remote shell
    r = cli("ssh", "shared-v6e16", "--worker", "3", "--", "echo", "$TPU_WORKER_ID")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    r = cli("ssh", "shared-v6e16", "--worker", "9")
    assert r.returncode == 2 and "worker 9 does not exist" in r.stderr


def test_interactive_ssh_shell(slice16, cli):
    pexpect = pytest.importorskip("pexpect")
    if not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    import sys

    child = pexpect.spawn(sys.executable, ["-m", "tpuctl", "ssh", "shared-v6e16", "--worker", "1"],
                          env=cli.env(), encoding="utf-8", timeout=30)
    child.expect([r"\$ ", r"# "])  # the shell's first prompt: typing earlier may be discarded
    child.sendline("echo marker-$((40+2))-$TPU_WORKER_ID")
    child.expect("marker-42-1")
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


def test_missing_node_is_exit_3(cli):
    r = cli("describe", "no-such-node")
    assert r.returncode == 3
    assert "no-such-node" in r.stderr and "hint:" in r.stderr
    assert "%24alt" not in r.stderr  # the REST client's query string is noise
    r = cli("exec", "no-such-node", "--", "true")
    assert r.returncode == 3


def test_unknown_runtime_is_exit_2_naming_it(cli, node_name):
    r = cli("create", node_name, "--type", "v6e-8", "--runtime", "tpu-vm-nonesuch")
    assert r.returncode == 2
    assert "tpu-vm-nonesuch" in r.stderr and "--runtime" in r.stderr
    assert cli("describe", node_name).returncode == 3  # nothing half-done


def _dead_endpoint() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["create", "Bad_Name", "--type", "v6e-8"], "invalid node name 'Bad_Name'"),
        (["create", "good-name", "--type", "v6e-3"], "unknown accelerator type 'v6e-3'"),
        (["create", "good-name", "--type", "v6e-8", "--label", "X=y"], "invalid label key"),
        (["exec", "good-name", "--worker", "1-x", "--", "true"], "invalid worker selection"),
        (["exec", "Bad", "--", "true"], "invalid node name"),
        (["describe", "-x"], ""),
        (["delete", "UPPER", "--yes"], "invalid node name"),
        (["exec", "good-name"], "Missing argument 'command'"),
    ],
)
def test_bad_input_fails_fast_with_exit_2_and_no_api_call(cli, args, needle):
    # the endpoint has nothing listening: any API call would turn into exit 4, not 2
    r = cli(*args, env=cli.env(TPUCTL_API_ENDPOINT=_dead_endpoint()))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3


def test_unreachable_endpoint_is_a_cloud_error(cli):
    r = cli("list", env=cli.env(TPUCTL_API_ENDPOINT=_dead_endpoint()))
    assert r.returncode == 4
    assert "cannot reach" in r.stderr and "emulator" in r.stderr


def test_no_project_and_no_credentials(cli, tmp_path):
    bare = Cli(home=tmp_path, endpoint=None)
    r = bare("list")
    assert r.returncode == 2 and "no project configured" in r.stderr
    r = bare("list", "--project", "p", "--zone", "us-east5-b",
             env=bare.env(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "missing.json")))
    assert r.returncode in (2, 4)
    assert "credentials" in r.stderr.lower()
    assert "Traceback" not in r.stderr


THEIRS = {"ssh-keys": "bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob bob"}


def _foreign_node(emulator, name: str, labels: dict[str, str]):
    """A node someone else made (gcloud, or another user's tpuctl): their key, their labels."""
    from google.cloud import tpu_v2

    client = tpu_client(emulator.endpoint, emulator.state_dir)
    client.create_node(request={
        "parent": "projects/local-project/locations/local-a", "node_id": name,
        "node": tpu_v2.Node(accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e",
                            labels=labels, metadata=THEIRS),
    }).result(timeout=30)
    return client, f"projects/local-project/locations/local-a/nodes/{name}"


def test_delete_and_down_refuse_unmanaged_nodes_and_change_nothing(cli, emulator, node_name):
    client, full = _foreign_node(emulator, node_name, {})
    r = cli("delete", node_name, "--yes")
    assert r.returncode == 2 and "not managed by tpuctl" in r.stderr
    for args in (["down", node_name, "--yes"], ["down", node_name, "--yes", "--any-owner"],
                 ["exec", node_name, "--", "true"]):
        r = cli(*args)
        assert r.returncode == 2 and "not managed by tpuctl" in r.stderr, (args, r.stderr)
    # checked before any change: metadata as it was, nothing installed on the worker
    assert dict(client.get_node(name=full).metadata) == THEIRS
    home = emulator.state_dir / "nodes" / f"local-project.local-a.{node_name}" / "w0" / "home"
    assert not (home / ".tpuctl").exists()
    assert cli("describe", node_name).returncode == 0  # still there
    assert node_name not in cli("list").stdout  # list shows managed nodes only...
    assert node_name in cli("list", "--all").stdout  # ...unless --all
    full = f"projects/local-project/locations/local-a/nodes/{node_name}"
    client.delete_node(request={"name": full}).result(timeout=30)


def test_another_owners_node_survives_delete_gc_and_down_without_any_owner(cli, emulator,
                                                                           node_name):
    client, full = _foreign_node(emulator, node_name, {
        "managed-by": "tpuctl", "tpuctl-task": node_name, "tpuctl-owner": "bob_example_com",
        "tpuctl-expires": "1"})  # long expired: a gc candidate, but not ours
    try:
        for args in (["delete", node_name, "--yes"], ["down", node_name, "--yes"],
                     ["exec", node_name, "--", "true"]):
            r = cli(*args)
            assert r.returncode == 2, (args, r.stderr)
            assert f"node {node_name!r} belongs to bob_example_com, not to you" in r.stderr
        assert "--any-owner" in cli("delete", node_name, "--yes").stderr
        r = cli("gc", "--yes", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert node_name not in doc["deleted"]
        assert node_name in [c["name"] for c in doc["not_yours"]]
        assert dict(client.get_node(name=full).metadata) == THEIRS  # untouched
        r = cli("gc", "--dry-run", "--any-owner", "--json")
        assert node_name in [c["name"] for c in json.loads(r.stdout)["candidates"]]
        listed = {n["name"]: n for n in json.loads(cli("list", "--json").stdout)}
        assert listed[node_name]["owner"] == "bob_example_com"
        assert "bob_example_com" in cli("list").stdout
        r = cli("delete", node_name, "--yes", "--any-owner")
        assert r.returncode == 0, r.stderr
    finally:
        with contextlib.suppress(Exception):
            client.delete_node(name=full).result(timeout=30)


def test_create_with_the_name_of_an_unmanaged_node_is_refused(cli, emulator, node_name):
    from google.cloud import tpu_v2

    client = tpu_client(emulator.endpoint, emulator.state_dir)
    client.create_node(request={
        "parent": "projects/local-project/locations/local-a", "node_id": node_name,
        "node": tpu_v2.Node(accelerator_type="v6e-8", runtime_version="v2-alpha-tpuv6e"),
    }).result(timeout=30)
    r = cli("create", node_name, "--type", "v6e-8")
    assert r.returncode == 2 and "not managed by tpuctl" in r.stderr


def test_delete_kills_every_worker_process_and_needs_yes_off_a_tty(cli, node_name):
    assert cli("create", node_name, "--type", "v6e-8").returncode == 0
    r = cli("exec", node_name, "--", "bash", "-c",
            "setsid nohup sleep 1000 >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split()[-1])
    assert Path(f"/proc/{pid}").exists()
    r = cli("delete", node_name)
    assert r.returncode == 2 and "--yes" in r.stderr
    r = cli("delete", node_name, "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["deleted"] is True
    wait_until(lambda: Path(f"/proc/{pid}").exists(), lambda alive: not alive, timeout=5)
    assert cli("describe", node_name).returncode == 3


def test_config_shows_sources(cli):
    r = cli("config", "--json")
    doc = json.loads(r.stdout)
    assert doc["api_endpoint"]["source"] == "$TPUCTL_API_ENDPOINT"
    assert doc["zone"]["value"] == "local-a"


def test_help_imports_no_heavy_module(cli):
    for args in (["--help"], ["create", "--help"], ["exec", "--help"]):
        env = cli.env(PYTHONPROFILEIMPORTTIME="1")
        p = subprocess.run([os.sys.executable, "-X", "importtime", "-m", "tpuctl", *args],
                           capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode == 0
        imported = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if "|" in ln}
        heavy = {m for m in imported
                 if m.startswith(("google", "asyncssh", "jax", "grpc", "aiohttp"))}
        assert not heavy, heavy


def test_create_through_a_queued_resource_and_delete_it(cli, emulator, node_name):
    r = cli("create", node_name, "--type", "v6e-8", "--queued", "--json")
    assert r.returncode == 0, r.stderr
    node = json.loads(r.stdout)["node"]
    assert node["state"] == "READY" and len(node["workers"]) == 1
    assert node["queued_resource"].endswith(f"/queuedResources/{node_name}")
    r = cli("exec", node_name, "--", "true")
    assert r.returncode == 0, r.stderr
    r = cli("delete", node_name, "--yes")
    assert r.returncode == 0, r.stderr
    assert cli("describe", node_name).returncode == 3
    from google.api_core.exceptions import NotFound

    client = tpu_client(emulator.endpoint, emulator.state_dir)
    with pytest.raises(NotFound):  # the queued resource went with it
        client.get_queued_resource(
            name=f"projects/local-project/locations/local-a/queuedResources/{node_name}")


def test_the_tests_emulator_is_as_strict_as_gcp(emulator) -> None:
    # every e2e test runs against GCP's behaviour: distinct internal and external addresses
    # and a fresh key refused for seconds while the guest agent applies it (issue 15)
    settings = emulator.admin("GET", "faults")["settings"]
    assert settings["network"] == "cloud"
    assert settings["guest-agent-delay"] == 3.0
