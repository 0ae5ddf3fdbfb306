"""Fault injection through the real google-cloud-tpu client and real SSH: API errors, stockouts,
slow provisioning, refused and cut SSH connections, unreachable workers, scheduled preemption;
deterministic under a seed; strictly validated; loopback only."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry
from google.api_core.future import polling
from google.cloud import tpu_v2

from tests.conftest import create_keyed_node, tpu_client, wait_until
from tests.emulator.conftest import FAST_DELAY, TOKEN, FakeWorkerHost
from tpuctl.cli.main import run as cli
from tpuctl.cloud.retry import is_capacity_error, is_transient_api_error
from tpuctl.emulator.faults import (
    FaultError,
    Faults,
    default_account,
    parse_assignments,
    validate,
)
from tpuctl.emulator.server import run_in_thread

PROJECT = "faults"
PARENT = f"projects/{PROJECT}/locations/local-a"
OTHER = f"projects/{PROJECT}/locations/local-b"
POLL = retry.Retry(predicate=polling.POLLING_PREDICATE, initial=0.02, maximum=0.1, timeout=20)
INJECTED = (gexc.TooManyRequests, gexc.ServiceUnavailable, gexc.InternalServerError)
State = tpu_v2.Node.State
QrState = tpu_v2.QueuedResourceState.State


def _node(acc: str = "v6e-8", **kw: Any) -> Any:
    return tpu_v2.Node(accelerator_type=acc, runtime_version="v2-alpha-tpuv6e", **kw)


def _admin(endpoint: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}/emulator/v1/{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def fake_emulator_with(tmp_path: Path) -> Callable[..., Any]:
    """A context manager: a fresh emulator (fake workers) with these faults and seed."""

    def start(**kw: Any) -> Any:
        hosts: list[FakeWorkerHost] = []

        def factory(d: Path, port: int) -> FakeWorkerHost:
            hosts.append(FakeWorkerHost(d, port))
            return hosts[-1]

        state_dir = tmp_path / f"emu{len(list(tmp_path.iterdir()))}"
        return run_in_thread(state_dir, create_delay=FAST_DELAY, worker_host=factory,
                             token=TOKEN, **kw)

    return start


# ------------------------------------------------------------------ validation


def test_fault_specs_are_validated_strictly() -> None:
    assert parse_assignments(
        [
            "api-error-rate=0.2",
            "stockout-zones=local-b,local-a",
            "unreachable-workers=n1:2,n1:0",
            "unreachable-workers=projects/p/locations/local-a/nodes/n2:1",
            "create-delay=0",
        ]
    ) == {
        "api-error-rate": 0.2,
        "stockout-zones": ["local-a", "local-b"],
        "unreachable-workers": ["n1:0", "n1:2", "projects/p/locations/local-a/nodes/n2:1"],
        "create-delay": 0.0,
    }
    bad = {
        "bogus=1": "unknown fault 'bogus'",
        "api-error-rate": "not KEY=VALUE",
        "api-error-rate=1.5": "api-error-rate",
        "api-error-rate=lots": "api-error-rate",
        "ssh-drop-rate=-0.1": "ssh-drop-rate",
        "ssh-refuse-rate=nan": "ssh-refuse-rate",
        "stockout-zones=mars-1": "unknown zone 'mars-1'",
        "stockout-mode=sometimes": "stockout-mode",
        "create-delay=-1": "create-delay",
        "ssh-drop-after=0": "ssh-drop-after",
        "unreachable-workers=n1": "NODE:WORKER",
        "unreachable-workers=N_1:2": "NODE:WORKER",
        "unreachable-workers=n1:-1": "NODE:WORKER",
    }
    for spec, words in bad.items():
        with pytest.raises(FaultError, match=words):
            parse_assignments([spec])
    with pytest.raises(FaultError, match="given twice"):
        parse_assignments(["create-delay=1", "create-delay=2"])
    with pytest.raises(FaultError, match="unknown fault"):
        validate({"api_error_rate": 0.1})
    with pytest.raises(FaultError):
        validate({"api-error-rate": True})


def test_cli_rejects_a_bad_fault_with_exit_2(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    sd = str(tmp_path)
    assert cli(["emulator", "serve", "--state-dir", sd, "--fault", "no-such-fault=1"]) == 2
    assert "no-such-fault" in capsys.readouterr().err
    assert cli(["emulator", "start", "--state-dir", sd, "--fault", "api-error-rate=2"]) == 2
    assert "api-error-rate" in capsys.readouterr().err
    assert not (tmp_path / "emulator.json").exists()  # nothing was started


# ------------------------------------------------------------------ admin endpoint


def test_admin_faults_round_trip(fake_emulator_with: Callable[..., Any],
                                 capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_emulator_with(faults={"api-error-rate": 0.25}, seed=7) as ep:
        # the CLI below finds the token as `eval "$(tpuctl emulator start)"` would let it
        monkeypatch.setenv("TPUCTL_API_TOKEN_FILE", str(tmp_path / "emu0" / "token"))
        status, body = _admin(ep, "GET", "faults")
        assert status == 200 and body["seed"] == 7 and body["faults"] == {"api-error-rate": 0.25}
        assert body["settings"] == {"network": "cloud", "guest-agent-delay": 3.0,
                                    "account": default_account()}
        status, body = _admin(
            ep, "POST", "faults",
            {"stockout-zones": "local-b", "unreachable-workers": ["n:1"], "seed": 9},
        )
        assert status == 200 and body["seed"] == 9 and body["faults"] == {
            "api-error-rate": 0.25,
            "stockout-zones": ["local-b"],
            "unreachable-workers": ["n:1"],
        }
        assert _admin(ep, "POST", "faults", {"api-error-rate": None})[1]["faults"] == {
            "stockout-zones": ["local-b"],
            "unreachable-workers": ["n:1"],
        }
        status, err = _admin(ep, "POST", "faults", {"ssh-drop-rat": 0.1})
        assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT"
        assert "ssh-drop-rat" in err["error"]["message"]
        status, err = _admin(ep, "POST", "faults", {"ssh-drop-rate": 3})
        assert status == 400 and "ssh-drop-rate" in err["error"]["message"]
        status, body = _admin(ep, "DELETE", "faults")
        assert (status, body["seed"], body["faults"]) == (200, 9, {})

        # the same through the CLI, which finds the emulator by --api-endpoint (and its
        # token through TPUCTL_API_TOKEN_FILE)
        assert cli(["emulator", "faults", "--api-endpoint", ep, "create-delay=2",
                    "ssh-refuse-rate=0.5", "network=flat", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["faults"] == {"create-delay": 2.0, "ssh-refuse-rate": 0.5,
                                   "network": "flat"}
        assert shown["settings"]["network"] == "flat"
        assert shown["settings"]["account"] == default_account()
        assert cli(["emulator", "faults", "--api-endpoint", ep, "--clear"]) == 0
        assert "no faults" in capsys.readouterr().out
        assert cli(["emulator", "faults", "--api-endpoint", ep, "bogus=1"]) == 2


# ------------------------------------------------------------------ API errors


def test_api_error_rate_one_fails_every_call_before_any_effect(
    fake_emulator_with: Callable[..., Any],
) -> None:
    with fake_emulator_with(faults={"api-error-rate": 1.0}, seed=3) as ep:
        client = tpu_client(ep, TOKEN)
        seen: dict[type, gexc.GoogleAPICallError] = {}
        for i in range(30):
            with pytest.raises(INJECTED) as info:
                if i % 3 == 0:
                    client.list_nodes(parent=PARENT)
                elif i % 3 == 1:
                    client.get_node(name=f"{PARENT}/nodes/x")
                else:
                    client.create_node(parent=PARENT, node_id=f"n{i}", node=_node())
            seen[type(info.value)] = info.value
        assert set(seen) == set(INJECTED)  # all three kinds, mapped by the client
        rate_limited = seen[gexc.TooManyRequests]
        assert "Rate limit exceeded" in rate_limited.message
        assert rate_limited.reason == "RATE_LIMIT_EXCEEDED"
        # tpuctl retries all three; a rate limit is not a capacity problem
        for exc in seen.values():
            assert is_transient_api_error(exc) and not is_capacity_error(exc)
        # admin calls are never faulted; the failed creates created nothing
        assert _admin(ep, "DELETE", "faults")[0] == 200
        assert list(client.list_nodes(parent=PARENT)) == []


def _outcomes(ep: str, n: int = 24) -> list[str]:
    client = tpu_client(ep, TOKEN)
    out = []
    for _ in range(n):
        try:
            client.list_nodes(parent=PARENT)
            out.append("ok")
        except gexc.GoogleAPICallError as e:
            out.append(str(e.code))
    return out


def test_api_errors_repeat_under_a_seed(fake_emulator_with: Callable[..., Any]) -> None:
    with fake_emulator_with(faults={"api-error-rate": 0.5}, seed=42) as ep:
        first = _outcomes(ep)
    with fake_emulator_with(faults={"api-error-rate": 0.5}, seed=42) as ep:
        second = _outcomes(ep)
        # re-seeding at run time restarts the same sequence
        _admin(ep, "POST", "faults", {"seed": 42})
        third = _outcomes(ep)
    with fake_emulator_with(faults={"api-error-rate": 0.5}, seed=43) as ep:
        other = _outcomes(ep)
    assert first == second == third
    assert "ok" in first and len(set(first)) >= 3
    assert other != first


# ------------------------------------------------------------------ stockouts, create delay


def test_stockout_fails_creates_in_that_zone_only(fake_emulator_with: Callable[..., Any],
                                                  ) -> None:
    with fake_emulator_with(faults={"stockout-zones": "local-b"}, seed=1) as ep:
        client = tpu_client(ep, TOKEN)
        ok = client.create_node(parent=PARENT, node_id="fine", node=_node())
        assert ok.result(timeout=10, polling=POLL).state == State.READY

        # as GCP: the call is accepted, the operation fails with code 8, the node is gone
        op = client.create_node(parent=OTHER, node_id="starved", node=_node())
        with pytest.raises(gexc.ResourceExhausted) as info:
            op.result(timeout=10, polling=POLL)
        assert 'There is no more capacity in the zone "local-b"' in info.value.message
        assert is_capacity_error(info.value)
        with pytest.raises(gexc.NotFound):
            client.get_node(name=f"{OTHER}/nodes/starved")

        # stockout-mode=request: the create call itself answers 429 RESOURCE_EXHAUSTED
        _admin(ep, "POST", "faults", {"stockout-mode": "request"})
        with pytest.raises(gexc.TooManyRequests) as info429:
            client.create_node(parent=OTHER, node_id="starved", node=_node())
        assert "no more capacity" in info429.value.message
        assert is_capacity_error(info429.value) and not is_transient_api_error(info429.value)
        with pytest.raises(gexc.NotFound):
            client.get_node(name=f"{OTHER}/nodes/starved")

        # cleared at run time: the zone has capacity again
        _admin(ep, "DELETE", "faults")
        op = client.create_node(parent=OTHER, node_id="starved", node=_node())
        assert op.result(timeout=10, polling=POLL).state == State.READY


def test_queued_resource_waits_for_resources_until_the_stockout_clears(
    fake_emulator_with: Callable[..., Any],
) -> None:
    with fake_emulator_with(faults={"stockout-zones": ["local-a"]}, seed=1) as ep:
        client = tpu_client(ep, TOKEN)
        name = f"{PARENT}/queuedResources/qr"
        qr = tpu_v2.QueuedResource(
            tpu=tpu_v2.QueuedResource.Tpu(
                node_spec=[
                    tpu_v2.QueuedResource.Tpu.NodeSpec(
                        parent=PARENT, node_id="queued-node", node=_node()
                    )
                ]
            )
        )
        client.create_queued_resource(parent=PARENT, queued_resource_id="qr", queued_resource=qr)

        def state() -> Any:
            return client.get_queued_resource(name=name).state.state

        wait_until(state, lambda s: s == QrState.WAITING_FOR_RESOURCES)
        time.sleep(0.3)
        assert state() == QrState.WAITING_FOR_RESOURCES
        with pytest.raises(gexc.NotFound):
            client.get_node(name=f"{PARENT}/nodes/queued-node")
        _admin(ep, "DELETE", "faults")
        wait_until(state, lambda s: s == QrState.ACTIVE)
        assert client.get_node(name=f"{PARENT}/nodes/queued-node").state == State.READY


def test_create_delay_fault_overrides_the_option_at_run_time(
    fake_emulator_with: Callable[..., Any],
) -> None:
    with fake_emulator_with(seed=1) as ep:
        client = tpu_client(ep, TOKEN)
        _admin(ep, "POST", "faults", {"create-delay": 0.6})
        t0 = time.monotonic()
        op = client.create_node(parent=PARENT, node_id="slow", node=_node())
        time.sleep(0.3)
        assert client.get_node(name=f"{PARENT}/nodes/slow").state == State.CREATING
        op.result(timeout=10, polling=POLL)
        assert time.monotonic() - t0 >= 0.6


def test_preempt_after_schedules_preemption(fake_emulator_with: Callable[..., Any],
                                            capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    with fake_emulator_with(seed=1) as ep:
        sd = str(tmp_path / "emu0")  # the CLI finds the endpoint and token from its state dir
        client = tpu_client(ep, TOKEN)
        name = f"{PARENT}/nodes/spot"
        client.create_node(parent=PARENT, node_id="spot", node=_node()).result(
            timeout=10, polling=POLL
        )
        assert cli(["emulator", "preempt", "spot", "--after", "0.5", "--state-dir", sd,
                    "--project", PROJECT, "--zone", "local-a"]) == 0
        captured = capsys.readouterr()
        assert "0.5s" in captured.err + captured.out
        t0 = time.monotonic()
        assert client.get_node(name=name).state == State.READY
        wait_until(lambda: client.get_node(name=name).state, lambda s: s == State.PREEMPTED)
        assert time.monotonic() - t0 >= 0.3
        # an unknown node is exit 3 at scheduling time, not a silent no-op later
        assert cli(["emulator", "preempt", "nope", "--after", "1", "--state-dir", sd,
                    "--project", PROJECT, "--zone", "local-a"]) == 3
        assert cli(["emulator", "preempt", "spot", "--after", "-1", "--state-dir", sd]) == 2


# ------------------------------------------------------------------ SSH faults (real workers)


@dataclass
class RealEmulator:
    endpoint: str
    state_dir: Path
    key: asyncssh.SSHKey
    workers: list[tuple[str, int, str]]  # ip, port, host key line


NODE = f"{PARENT}/nodes/ssh-faults"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealEmulator]:
    tmp = tmp_path_factory.mktemp("faults-real")
    key = asyncssh.generate_private_key("ssh-ed25519")
    pub = key.export_public_key("openssh").decode().strip()
    # keys at once (guest-agent-delay 0): this module is about faults, test_oslogin.py about
    # the delay
    with run_in_thread(tmp, create_delay=0.05, seed=5, token=TOKEN,
                       faults={"guest-agent-delay": 0}) as ep:
        workers = create_keyed_node(tpu_client(ep, TOKEN), PARENT, "ssh-faults", pub, POLL)
        yield RealEmulator(ep, tmp, key, workers)


async def _connect(real: RealEmulator, index: int) -> asyncssh.SSHClientConnection:
    ip, port, host_key = real.workers[index]
    known = asyncssh.import_known_hosts(f"[{ip}]:{port} {host_key}\n")
    return await asyncssh.connect(ip, port, username="alice", client_keys=[real.key],
                                  known_hosts=known, connect_timeout=5)


async def _echo(real: RealEmulator, index: int) -> str:
    conn = await _connect(real, index)
    try:
        return str((await conn.run("echo ok", check=True)).stdout).strip()
    finally:
        conn.close()


def _reaches(real: RealEmulator, index: int) -> bool:
    try:
        return asyncio.run(asyncio.wait_for(_echo(real, index), 10)) == "ok"
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        return False


def test_ssh_refuse_rate(real: RealEmulator) -> None:
    try:
        _admin(real.endpoint, "POST", "faults", {"ssh-refuse-rate": 1.0})
        assert not any(_reaches(real, 0) for _ in range(3))
        _admin(real.endpoint, "POST", "faults", {"ssh-refuse-rate": 0})
        assert all(_reaches(real, 0) for _ in range(3))
    finally:
        _admin(real.endpoint, "DELETE", "faults")


def test_unreachable_worker(real: RealEmulator) -> None:
    try:
        _admin(real.endpoint, "POST", "faults", {"unreachable-workers": "ssh-faults:2"})
        assert [_reaches(real, i) for i in range(4)] == [True, True, False, True]
        # it holds across a stop/start (fresh listeners)
        client = tpu_client(real.endpoint, TOKEN)
        client.stop_node(request={"name": NODE}).result(timeout=20, polling=POLL)
        client.start_node(request={"name": NODE}).result(timeout=20, polling=POLL)
        assert [_reaches(real, i) for i in range(4)] == [True, True, False, True]
        _admin(real.endpoint, "DELETE", "faults")
        assert [_reaches(real, i) for i in range(4)] == [True] * 4
    finally:
        _admin(real.endpoint, "DELETE", "faults")


def test_ssh_drop_cuts_a_running_command_and_spares_detached_processes(
    real: RealEmulator,
) -> None:
    cmd = (
        "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $! > ~/detached.pid; "
        "echo $$ > ~/cmd.pid; echo started; for i in $(seq 200); do echo tick; sleep 0.05; done"
    )

    async def run_cut() -> tuple[str, BaseException | None]:
        out = ""
        conn = await _connect(real, 1)
        try:
            proc = await conn.create_process(cmd)
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                out += str(line)
            await proc.wait()
            return out, None
        except (asyncssh.Error, OSError) as e:
            return out, e
        finally:
            conn.abort()

    home = real.state_dir / "nodes" / f"{PROJECT}.local-a.ssh-faults" / "w1" / "home"
    try:
        # seed 5: this session is cut after 0.29 s (the drop stream's first draw)
        _admin(real.endpoint, "POST", "faults",
               {"ssh-drop-rate": 1.0, "ssh-drop-after": 0.5, "seed": 5})
        t0 = time.monotonic()
        out, error = asyncio.run(asyncio.wait_for(run_cut(), 20))
        elapsed = time.monotonic() - t0
        assert out.startswith("started\ntick\n")  # cut mid-stream...
        assert out.count("tick") < 100 and elapsed < 5  # ...long before the command's end
        assert isinstance(error, asyncssh.ConnectionLost)
    finally:
        _admin(real.endpoint, "DELETE", "faults")
    detached = int((home / "detached.pid").read_text())
    command = int((home / "cmd.pid").read_text())
    try:
        # the command's own process group dies, as on a real disconnect...
        wait_until(lambda: _alive(command), lambda alive: not alive, timeout=10)
        # ...while what it started detached lives on
        assert _alive(detached)
    finally:
        if _alive(detached):
            os.kill(detached, signal.SIGKILL)
    assert _reaches(real, 1)  # and the worker answers again once the fault is cleared


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_emulator_listens_on_loopback_only(real: RealEmulator) -> None:
    """Every listening socket on the REST port and the workers' SSH port is in 127/8."""
    rest_port = int(real.endpoint.rsplit(":", 1)[1])
    ssh_port = real.workers[0][1]
    listening: dict[int, list[str]] = {rest_port: [], ssh_port: []}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            port = int(port_hex, 16)
            if st != "0A" or port not in listening:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            # /proc/net/tcp* prints each 32-bit word in host (little-endian) order
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            listening[port].append(str(ipaddress.ip_address(b"".join(words))))
    assert listening[rest_port] and len(listening[ssh_port]) >= len(real.workers)
    for addrs in listening.values():
        for addr in addrs:
            ip = ipaddress.ip_address(addr)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            assert ip.is_loopback, f"listening on {addr}"
    # each worker on its external address (what the API gives a client outside the VPC)
    # and its internal one (cloud network: two distinct addresses per worker)
    externals = {w[0] for w in real.workers}
    assert externals <= set(listening[ssh_port])
    assert len(set(listening[ssh_port]) - externals) == len(real.workers)


def test_faults_object_is_deterministic_per_kind() -> None:
    """One stream per kind: SSH decisions never shift the API's sequence."""
    a = Faults({"api-error-rate": 0.5, "ssh-refuse-rate": 0.5}, seed=11)
    b = Faults({"api-error-rate": 0.5, "ssh-refuse-rate": 0.5}, seed=11)
    seq_a = []
    for _ in range(20):
        seq_a.append(a.api_error("p"))
        a.refuse_ssh()  # interleaved on a only
    seq_b = [b.api_error("p") for _ in range(20)]
    assert seq_a == seq_b
