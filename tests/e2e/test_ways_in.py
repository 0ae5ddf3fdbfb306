"""Reaching workers from outside their VPC, through the real CLI on the emulator's cloud network
(issue 15's "Done when"): a node made with `--internal-ips` is refused at once with the ways
in; through a jump host (a worker of a node with an external IP, as on GCP) `exec` reaches
it; through IAP (the emulator's stand-in for `gcloud compute start-iap-tunnel` on PATH)
`exec`, tpuctl.yaml's `tunnel_through_iap` and `ssh-config` + plain ssh reach it from the
IAP range, and without gcloud the flag is refused at once; with OS Login on for the
project, `exec -- whoami` is the account's POSIX username, the node's `ssh-keys` holds no
tpuctl key, and the quickstart loop runs. A user of its own (HOME) keeps ~/.ssh apart."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Emulator, tpu_client, wait_until

pytestmark = pytest.mark.e2e

EXT, PRIV, OSL = "ways-ext", "ways-priv", "ways-osl"
PARENT = "projects/local-project/locations/local-a"


@pytest.fixture(scope="module")
def user(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    home = tmp_path_factory.mktemp("ways-home")
    cli = Cli(home=home, endpoint=emulator.endpoint, token_file=emulator.token_file)
    for args in ((EXT, "--type", "v6e-8"), (PRIV, "--type", "v6e-8", "--internal-ips")):
        r = cli("create", *args)
        assert r.returncode == 0, r.stderr
    yield cli
    for name in (EXT, PRIV):
        cli("delete", name, "--yes")


def test_an_internal_ips_node_is_refused_at_once_naming_the_ways_in(user: Cli) -> None:
    started = time.monotonic()
    r = user("exec", PRIV, "--", "true")
    assert r.returncode == 2, r.stderr
    assert "has no external IP on w0" in r.stderr and "--ssh-proxy-jump" in r.stderr
    assert "--tunnel-through-iap" in r.stderr and "--internal-ip" in r.stderr
    assert time.monotonic() - started < 20  # no connection attempt to wait out


def test_exec_through_a_jump_host_reaches_an_internal_ips_node(user: Cli) -> None:
    # a jump host is an established machine: one made a moment ago may still be refusing
    # keys while its guest agent applies them (as on GCP); tpuctl's own exec waits that out
    r = user("exec", EXT, "--", "true")
    assert r.returncode == 0, r.stderr
    ext = json.loads(user("describe", EXT, "--json").stdout)["workers"][0]
    # the jump host is reached as the user's own ssh would: their key and known_hosts
    ssh = user.home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    tpuctl_key = user.home / ".tpuctl" / "ssh" / "tpuctl_ed25519"
    shutil.copy(tpuctl_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    pinned = next((user.home / ".tpuctl" / "ssh" / "known_hosts.d").glob(f"*{EXT}*"))
    (ssh / "known_hosts").write_text(pinned.read_text())
    jump = f"{_local_user()}@{ext['external_ip']}:{ext['ssh_port']}"
    r = user("exec", PRIV, "--ssh-proxy-jump", jump, "--", "bash", "-c",
             'echo "$TPU_WORKER_ID ${SSH_CONNECTION%% *}"')
    assert r.returncode == 0, r.stderr
    # worker 0 of the private node, reached from the jump host's internal address
    assert r.stdout.splitlines()[0] == f"[w0] 0 {ext['ip']}"


def _local_user() -> str:
    from tpuctl.sshkeys import ssh_username

    return ssh_username()


@pytest.fixture(scope="module")
def gcloud_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH with the IAP stand-in first, as `gcloud` (a real gcloud later on PATH is shadowed)."""
    import os

    from tpuctl.emulator.iap import install

    bin_dir = tmp_path_factory.mktemp("iap-bin")
    install(bin_dir)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_exec_through_iap_reaches_an_internal_ips_node_from_the_iap_range(
        user: Cli, gcloud_path: str, tmp_path: Path) -> None:
    from tpuctl.emulator.addressing import IAP_SOURCE

    r = user("exec", PRIV, "--tunnel-through-iap", "--", "bash", "-c",
             'echo "$TPU_WORKER_ID ${SSH_CONNECTION%% *}"', env=user.env(PATH=gcloud_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"[w0] 0 {IAP_SOURCE}"]
    # the same way in from tpuctl.yaml's `ssh:` block, no flag
    (tmp_path / "tpuctl.yaml").write_text("ssh:\n  tunnel_through_iap: true\n")
    r = subprocess.run([sys.executable, "-m", "tpuctl", "exec", PRIV, "--", "bash", "-c",
                        "echo ${SSH_CONNECTION%% *}"], capture_output=True, text=True,
                       cwd=tmp_path, env=user.env(PATH=gcloud_path), timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"[w0] {IAP_SOURCE}"]


def test_ssh_config_through_iap_is_a_proxy_command_plain_ssh_uses(
        user: Cli, gcloud_path: str, tmp_path: Path) -> None:
    from tpuctl.emulator.addressing import IAP_SOURCE

    env = user.env(PATH=gcloud_path)
    r = user("ssh-config", PRIV, "--tunnel-through-iap", env=env)
    assert r.returncode == 0, r.stderr
    assert "ProxyCommand " in r.stdout and "start-iap-tunnel" in r.stdout
    config = tmp_path / "config"
    config.write_text(r.stdout)
    ssh = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{PRIV}-w0",
                          "echo ${SSH_CONNECTION%% *}"], capture_output=True, text=True,
                         timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert ssh.returncode == 0, ssh.stderr
    assert ssh.stdout.strip() == IAP_SOURCE


def test_iap_without_gcloud_fails_at_once_and_changes_nothing(user: Cli,
                                                               emulator: Emulator) -> None:
    import os

    before = tpu_client(emulator.endpoint, emulator.state_dir).get_node(
        name=f"{PARENT}/nodes/{PRIV}").metadata
    no_gcloud = os.path.dirname(sys.executable)  # python alone: no gcloud anywhere on PATH
    started = time.monotonic()
    r = user("exec", PRIV, "--tunnel-through-iap", "--", "true", env=user.env(PATH=no_gcloud))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr  # the error, and its hint
    assert "--tunnel-through-iap needs gcloud, which is not on PATH" in r.stderr
    assert time.monotonic() - started < 20
    after = tpu_client(emulator.endpoint, emulator.state_dir).get_node(
        name=f"{PARENT}/nodes/{PRIV}").metadata
    assert dict(after) == dict(before)


# Last in the module: turning OS Login on for the project (and off again) changes what every
# node's guest agent accepts, EXT's and PRIV's too, and as on GCP their metadata keys work
# again only once each agent has applied the change, seconds later. Tests of those nodes after
# it would race the agents (tpuctl waits out a refused key only after a key change of its own).
@pytest.fixture
def oslogin_project(emulator: Emulator) -> Iterator[None]:
    emulator.admin("POST", "projects/local-project/metadata",
                   json.dumps({"enable-oslogin": "TRUE"}).encode())
    try:
        yield
    finally:
        emulator.admin("POST", "projects/local-project/metadata",
                       json.dumps({"enable-oslogin": None}).encode())


def test_os_login_logs_in_as_the_posix_user_and_runs_the_quickstart_loop(
        user: Cli, emulator: Emulator, oslogin_project: None, tmp_path: Path) -> None:
    from tests.e2e.test_docs import _copy_of_this_repository

    account = emulator.admin("GET", "faults")["settings"]["account"]
    posix = "".join(c if c.isalnum() else "_" for c in account.lower())[:32]
    config = json.loads(user("config", "--json").stdout)
    assert config["login"]["value"] == "oslogin"
    r = user("create", OSL, "--type", "v6e-16")  # the quickstart recipe's type: `up` reuses it
    try:
        assert r.returncode == 0, r.stderr
        r = user("exec", OSL, "--", "whoami")
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.splitlines()) == [f"[w{i}] {posix}" for i in range(4)]
        # ssh-config's User is the POSIX name too: plain ssh logs in with it
        r = user("ssh-config", OSL)
        assert r.returncode == 0, r.stderr
        assert f"  User {posix}\n" in r.stdout
        (tmp_path / "ssh_config").write_text(r.stdout)
        ssh = subprocess.run(["ssh", "-F", str(tmp_path / "ssh_config"), "-o", "BatchMode=yes",
                              f"{OSL}-w3", "whoami"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert (ssh.returncode, ssh.stdout) == (0, f"{posix}\n"), ssh.stderr
        # the whole quickstart loop as that user: sync, bootstrap, launch, tail to the end
        repo = _copy_of_this_repository(tmp_path / "repo")
        up = subprocess.run([sys.executable, "-m", "tpuctl", "up", "recipes/quickstart.yaml",
                             "--name", OSL, "--run-id", "osl-quickstart"],
                            capture_output=True, text=True, cwd=repo, env=user.env(),
                            timeout=600, stdin=subprocess.DEVNULL)
        assert up.returncode == 0, up.stderr[-3000:]
        assert "processes=4 devices=16" in up.stdout
        losses = [float(x) for x in re.findall(r"step=\d+ loss=([0-9.]+)", up.stdout)]
        assert len(losses) >= 4 and losses[-1] < losses[0], losses
        st = user("status", OSL, "--json")
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["run_id"] == "osl-quickstart"
        got = user("logs", "fetch", OSL, "--json")
        assert got.returncode == 0, got.stderr
        files = [Path(f) for f in json.loads(got.stdout)["files"]]
        assert len(files) == 4 and "loss=" in files[0].read_text()
        # everything the loop left is in the POSIX user's home, nothing in the image's user's;
        # asked through the connection daemon, which logs in as that user too
        daemon = user.env(TPUCTL_PERSIST_CONNECTIONS="60")
        r = user("exec", OSL, "--", "true", env=daemon)  # in process; starts the daemon
        assert r.returncode == 0, r.stderr
        wait_until(lambda: json.loads(user("mux", "status", "--json", env=daemon).stdout),
                   lambda st: st.get("running"), timeout=30)
        r = user("exec", OSL, "--", "bash", "-c", "echo $(whoami) $HOME", env=daemon)
        assert r.returncode == 0, r.stderr
        lines = sorted(r.stdout.splitlines())
        assert [ln.split()[:2] for ln in lines] == [[f"[w{i}]", posix] for i in range(4)], lines
        assert all(ln.endswith(f"/users/{posix}") for ln in lines), lines
        assert list((user.home / ".tpuctl" / "mux").glob("*.sock")), "no daemon was used"
        node_dir = emulator.state_dir / "nodes" / f"local-project.local-a.{OSL}"
        for i in range(4):
            home = node_dir / f"w{i}" / "users" / posix
            assert (home / ".tpuctl" / "runs" / "osl-quickstart" / "exit_code").read_text(
            ).strip() == "0"
            assert (home / "work" / "repo" / "recipes" / "quickstart.yaml").is_file()
            assert not (node_dir / f"w{i}" / "home" / ".tpuctl" / "runs").exists()
        node = tpu_client(emulator.endpoint, emulator.state_dir).get_node(
            name=f"{PARENT}/nodes/{OSL}")
        assert "ssh-keys" not in node.metadata
    finally:
        user("mux", "stop")
        user("delete", OSL, "--yes")
