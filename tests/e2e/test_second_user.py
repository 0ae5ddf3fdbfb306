"""Another user of the same machine gets nothing from your emulator or your tpuctl files.

Runs as root (as here and in CI) and acts as `nobody` (uid 65534) through `setpriv`, with
system tools only (curl, ssh, ssh-keygen, cat): the victim's emulator refuses its REST and
admin calls without the token, its SSH workers refuse its keys, and the victim's key, token,
emulator state and a node's secrets cannot be read (docs/reliability.md#threat-model).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                       reason="acting as a second user needs root and setpriv"),
]

NOBODY = 65534
PARENT = "projects/local-project/locations/local-a"
SECRET = "hf_" + "Kq7" * 10


def as_nobody(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(argv[0])
    if tool is None:
        pytest.skip(f"{argv[0]} is not installed (scripts/test.sh installs it)")
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", tool,
         *argv[1:]],
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C"},
        input=stdin.decode() if stdin else None, capture_output=True, text=True, timeout=60)


def http_as_nobody(method: str, url: str, *headers: str, body: str | None = None) -> str:
    """curl as nobody; the HTTP status code."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, url]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", body]
    return as_nobody(*args).stdout


@dataclass
class Victim:
    cli: Cli
    base: Path
    state: Path
    endpoint: str
    worker_ip: str
    ssh_port: int


@pytest.fixture(scope="module")
def victim() -> Iterator[Victim]:
    """Alice: a home others may enter (0755, as many are), her emulator started the README's
    way, a node with her secrets on it."""
    base = Path(tempfile.mkdtemp(prefix="tpuctl-2user-", dir="/tmp"))
    base.chmod(0o755)
    home = base / "alice"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    cli = Cli(home=home, endpoint=None)
    started = cli("emulator", "start", "--create-delay", "0.3")
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(line.removeprefix("export ").split("=", 1)
                       for line in started.stdout.splitlines())
        cli.endpoint = exports["TPUCTL_API_ENDPOINT"]
        cli.token_file = Path(exports["TPUCTL_API_TOKEN_FILE"])
        r = cli("create", "alices-node", "--type", "v6e-8", "--json")
        assert r.returncode == 0, r.stderr
        worker = json.loads(r.stdout)["node"]["workers"][0]
        r = cli("secrets", "push", "alices-node", "-", input=f"HF_TOKEN={SECRET}\n")
        assert r.returncode == 0, r.stderr
        # the external IP: the one address another user of this machine (outside the
        # emulated VPC) gets an SSH answer from
        yield Victim(cli, base, home / ".tpuctl" / "emulator", cli.endpoint,
                     worker["external_ip"], worker["ssh_port"])
    finally:
        cli("emulator", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_the_emulator_refuses_rest_and_admin_calls_without_its_token(victim: Victim) -> None:
    ep = victim.endpoint
    intruder = json.dumps({"acceleratorType": "v6e-8", "runtimeVersion": "v2-alpha-tpuv6e",
                           "metadata": {"ssh-keys": "nobody:ssh-ed25519 AAAA nobody"}})
    calls = [("GET", f"{ep}/v2/{PARENT}/nodes", None),
             ("GET", f"{ep}/v2/{PARENT}/nodes/alices-node", None),
             ("POST", f"{ep}/v2/{PARENT}/nodes?nodeId=intruder", intruder),
             ("PATCH", f"{ep}/v2/{PARENT}/nodes/alices-node?updateMask=metadata", intruder),
             ("GET", f"{ep}/emulator/v1/status", None),
             ("POST", f"{ep}/emulator/v1/faults", '{"ssh-refuse-rate": 1}'),
             ("POST", f"{ep}/emulator/v1/{PARENT}/nodes/alices-node:preempt", "{}")]
    for method, url, body in calls:
        for auth in ((), ("Authorization: Bearer guessed",)):
            assert http_as_nobody(method, url, *auth, body=body) == "401", (method, url)
    # and nothing it asked for happened
    r = victim.cli("list", "--json")
    assert [n["name"] for n in json.loads(r.stdout)] == ["alices-node"]
    r = victim.cli("emulator", "faults", "--json")
    assert json.loads(r.stdout)["faults"] == {}
    r = victim.cli("describe", "alices-node", "--json")
    assert json.loads(r.stdout)["state"] == "READY"


def test_a_second_user_gets_no_shell_on_a_worker(victim: Victim) -> None:
    keys = victim.base / "nobody-keys"
    keys.mkdir()
    os.chown(keys, NOBODY, NOBODY)
    r = as_nobody("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "key"))
    assert r.returncode == 0, r.stderr
    for user in ("root", "nobody", victim.cli.home.name):
        r = as_nobody("ssh", "-F", "/dev/null", "-i", str(keys / "key"), "-o", "BatchMode=yes",
                      "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
                      "-p", str(victim.ssh_port), "-l", user, "--", victim.worker_ip,
                      "id")
        assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr
        assert "uid=" not in r.stdout


def test_a_second_user_cannot_read_the_users_tpuctl_files(victim: Victim) -> None:
    home = victim.cli.home
    tpuctl = home / ".tpuctl"
    node = next((victim.state / "nodes").glob("*alices-node"))
    private = [tpuctl / "ssh" / "tpuctl_ed25519", victim.state / "token",
               victim.state / "emulator.json", victim.state / "state.json",
               victim.state / "emulator.log", node / "w0" / "home" / ".tpuctl" / "secrets.env",
               node / "w0" / "ssh_host_ed25519_key"]
    for path in private:
        assert path.exists(), path
        r = as_nobody("cat", str(path))
        assert r.returncode != 0 and "Permission denied" in r.stderr, path
        assert SECRET not in r.stdout and "PRIVATE KEY" not in r.stdout
    for d in (tpuctl, tpuctl / "ssh", victim.state, node / "w0" / "home"):
        assert d.stat().st_mode & 0o777 == 0o700, d  # each layer, not only the outermost
        assert as_nobody("ls", str(d)).returncode != 0, d
    for f in private:
        assert f.stat().st_mode & 0o077 == 0, f  # and no file readable should a dir open up
