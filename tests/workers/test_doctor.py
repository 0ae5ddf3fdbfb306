"""remote/doctor.sh on emulated workers, healthy and under each fault it must detect: a full
disk, a held TPU device, a stale lockfile, a blocked port, a venv whose package versions
differ, an image without ensurepip; and the worker faults acted inside sessions (a stuck
worker, package skew), through the World the emulator hands the worker host."""

from __future__ import annotations

import asyncio
import functools
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tpuctl.emulator.processes import NODE_ENV, find_marked_pids, node_marker
from tpuctl.emulator.workerfaults import Wanted, skew_version
from tpuctl.remote import bundle
from tpuctl.workers.base import WorkerResult
from tpuctl.workers.ssh import SshWorkers

from .conftest import Env
from .test_ssh_workers import _run, _wait_dead

NODE = "doc"


@dataclass
class Check:
    status: str
    fields: dict[str, str]
    detail: str


def parse(out: str) -> dict[str, Check]:
    """doctor.sh's lines: `check=NAME status=S [K=V...] [detail=free text]`."""
    checks = {}
    for line in out.splitlines():
        head, _, detail = line.partition(" detail=")
        fields = dict(part.split("=", 1) for part in head.split())
        checks[fields.pop("check")] = Check(fields.pop("status"), fields, detail)
    return checks


@dataclass
class FakeWorld:
    """What the emulator's fabric would answer (vms.World), for two faults only."""

    stuck_workers: set[int] = field(default_factory=set)
    skewed: dict[int, list[str]] = field(default_factory=dict)

    def cloud_network(self) -> bool:
        return False

    def external_ips(self, node_id: str) -> bool:
        return False

    def may_reach(self, node_id: str, source_ip: str) -> bool:
        return True

    def oslogin_user(self, node_id: str, username: str) -> bool:
        return False

    def metadata_host(self, node_id: str, index: int) -> str | None:
        return None

    def stuck(self, node_id: str, index: int) -> bool:
        return node_id == NODE and index in self.stuck_workers

    def skew(self, node_id: str, index: int) -> list[str]:
        return self.skewed.get(index, []) if node_id == NODE else []


@dataclass
class Doc:
    env: Env
    client: SshWorkers
    ips: list[str]
    scripts: str

    def run(self, cmd: str, index: int, **kw: object) -> WorkerResult:
        [r] = _run(self.env, self.client, cmd, indices=[index], capture=True, **kw)
        return r

    def doctor(self, index: int, venv: str = "-", target: str = "-",
               timeout: str = "1", run: str = "-") -> dict[str, Check]:
        args = " ".join(shlex.quote(a) for a in (venv, target, timeout, run))
        # no emulator here, so no metadata server: one that refuses at once, not a DNS wait
        r = self.run(f"GCE_METADATA_HOST=127.0.0.1:1 bash {self.scripts}/doctor.sh {args}",
                     index)
        assert r.exit_code == 0, r
        return parse(r.stdout)

    def faults(self, index: int, **want: object) -> None:
        self.env.lt.call(self.env.host.apply_worker_faults(NODE, index, Wanted(**want)))


@pytest.fixture(scope="module")
def doc(env: Env) -> Iterator[Doc]:
    workers = env.lt.call(env.host.start_node(NODE, 205, 2, 2, env.authorized))
    client = SshWorkers(env.targets(workers), key_path=env.key.path)
    h, data = bundle()
    install = (f'd="$HOME/.tpuctl/bin/{h}"; mkdir -p "$d" && tar -xzf - -C "$d" && echo "$d"')
    results = _run(env, client, install, stdin=data, capture=True)
    assert all(r.ok for r in results), results
    try:
        yield Doc(env, client, [w.ip for w in workers], results[0].stdout.strip())
    finally:
        env.lt.call(client.close())
        env.lt.call(env.host.stop_node(NODE))


def test_a_healthy_worker(doc: Doc) -> None:
    checks = doc.doctor(0, target=f"{doc.ips[1]}:1")
    assert list(checks) == ["disk-home", "disk-tmp", "tpu", "lockfile", "python", "venv",
                            "packages", "clock", "metadata", "port"]
    assert all(c.status in ("ok", "skip", "warn") for c in checks.values()), checks
    assert checks["tpu"].status == checks["lockfile"].status == checks["venv"].status == "ok"
    assert checks["port"].fields["result"] == "closed"  # refused: reachable, nothing listens
    assert float(checks["clock"].fields["epoch"]) > 1.7e9
    assert checks["python"].fields["version"].startswith("3.")


def test_a_full_disk_on_one_worker(doc: Doc) -> None:
    doc.faults(1, full_disk=True)
    try:
        full = doc.doctor(1)
        assert full["disk-home"].status == full["disk-tmp"].status == "fail"
        assert "full" in full["disk-home"].detail and full["disk-home"].fields["used_pct"] == "100"
        assert doc.doctor(0)["disk-home"].status != "fail"
    finally:
        doc.faults(1)
    assert doc.doctor(1)["disk-home"].status != "fail"


def test_a_held_tpu_then_its_stale_lockfile(doc: Doc) -> None:
    doc.faults(0, held_tpu=True)
    checks = doc.doctor(0)
    assert checks["tpu"].status == "fail" and checks["tpu"].fields["holders"] == "1"
    assert "cmd=python3 train.py" in checks["tpu"].detail
    pid = int(checks["tpu"].detail.split("pid=")[1].split()[0])
    # busy.sh (what launch runs) names the same holder: one logic for both
    busy = doc.run(f"bash {doc.scripts}/busy.sh check", 0)
    assert f"pid={pid} cmd=python3 train.py" in busy.stdout
    assert doc.doctor(1)["tpu"].status == "ok"  # the other worker's devices are its own
    doc.faults(0)  # the holder dies; its lockfile stays behind, stale
    assert _wait_dead(pid)
    checks = doc.doctor(0)
    assert checks["tpu"].status == "ok" and checks["lockfile"].status == "warn"
    assert "stale" in checks["lockfile"].detail
    doc.run(f"bash {doc.scripts}/busy.sh check", 0)  # launch's check clears a stale one
    assert doc.doctor(0)["lockfile"].status == "ok"


def test_a_stale_lockfile(doc: Doc) -> None:
    doc.faults(1, stale_lockfile=True)
    try:
        assert doc.doctor(1)["lockfile"].status == "warn"
        assert doc.doctor(0)["lockfile"].status == "ok"
    finally:
        doc.faults(1)
        doc.run(f"bash {doc.scripts}/busy.sh check", 1)


def test_a_blocked_port_on_worker_0(doc: Doc) -> None:
    doc.faults(0, blocked_ports=frozenset({18476}))
    try:
        checks = doc.doctor(1, target=f"{doc.ips[0]}:18476", timeout="0.5")
        assert checks["port"].status == "fail" and checks["port"].fields["result"] == "filtered"
        assert "firewall" in checks["port"].detail
        other = doc.doctor(1, target=f"{doc.ips[0]}:18477", timeout="0.5")
        assert other["port"].status == "ok" and other["port"].fields["result"] == "closed"
    finally:
        doc.faults(0)
    assert doc.doctor(1, target=f"{doc.ips[0]}:18476")["port"].fields["result"] == "closed"


def test_the_latest_runs_coordinator_port(doc: Doc) -> None:
    assert doc.doctor(1, run="latest")["run-port"].status == "skip"  # no run yet
    # what launch leaves: the run's env file (shlex-quoted values) and `latest`
    doc.run("d=$HOME/.tpuctl/runs/dr1; mkdir -p $d && printf '%s\\n' \"export A='x y'\" "
            f"'export JAX_COORDINATOR_ADDRESS={doc.ips[0]}:18479' >$d/env && "
            "echo dr1 >$HOME/.tpuctl/runs/latest", 1)
    doc.faults(0, blocked_ports=frozenset({18479}))
    try:
        got = doc.doctor(1, target=f"{doc.ips[0]}:18476", timeout="0.5", run="latest")
        assert got["port"].status == "ok"  # 8476 (here 18476) is open; the run's is not
        assert got["run-port"].status == "fail" and got["run-port"].fields == {
            "addr": doc.ips[0], "port": "18479", "run": "dr1", "result": "filtered"}
    finally:
        doc.faults(0)
        doc.run("rm -rf $HOME/.tpuctl/runs/dr1 $HOME/.tpuctl/runs/latest", 1)


def test_an_image_without_ensurepip(doc: Doc) -> None:
    doc.faults(1, no_ensurepip=True)
    try:
        assert doc.doctor(1)["venv"].status == "warn"
        r = doc.run('d=$(mktemp -d); python3 -m venv "$d/v" 2>&1; echo rc=$?; rm -rf "$d"', 1)
        assert "rc=1" in r.stdout and "ensurepip is not" in r.stdout, r.stdout
        assert "apt install python3." in r.stdout
        r = doc.run('d=$(mktemp -d); python3 -m venv --without-pip "$d/v" && echo made; '
                    'rm -rf "$d"', 1)
        assert "made" in r.stdout
        assert doc.doctor(0)["venv"].status == "ok"
    finally:
        doc.faults(1)
    assert doc.doctor(1)["venv"].status == "ok"


def _fake_venv(doc: Doc, index: int, version: str) -> str:
    """A venv holding only jax's recorded metadata (what the check reads)."""
    venv = "$HOME/.tpuctl/venvs/doctest"
    r = doc.run(
        f'v={venv}; rm -rf "$v"; python3 -m venv --without-pip "$v" && '
        'sp=$("$v/bin/python" -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])")'
        f' && mkdir -p "$sp/jax-{version}.dist-info" && '
        f'printf "Metadata-Version: 2.1\\nName: jax\\nVersion: {version}\\n" '
        f'> "$sp/jax-{version}.dist-info/METADATA" && echo "$v"', index)
    assert r.exit_code == 0, r
    return r.stdout.strip()


def test_package_skew_on_one_worker(doc: Doc) -> None:
    venvs = [_fake_venv(doc, i, "0.4.35") for i in (0, 1)]
    assert doc.doctor(1, venv=venvs[1])["packages"].fields["jax"] == "0.4.35"
    doc.env.host.world = FakeWorld(skewed={1: ["jax"]})
    try:
        checks = [doc.doctor(i, venv=v) for i, v in enumerate(venvs)]
        assert checks[0]["packages"].fields["jax"] == "0.4.35"
        assert checks[1]["packages"].fields["jax"] == skew_version("0.4.35") == "0.4.34"
        assert checks[1]["packages"].fields["jaxlib"] == "-"
    finally:
        doc.env.host.world = None
    missing = doc.doctor(0, venv="/nonexistent/venv")["packages"]
    assert missing.status == "fail" and "bootstrap" in missing.detail


def test_a_stuck_worker_runs_nothing_until_its_session_is_closed(doc: Doc) -> None:
    doc.env.host.world = FakeWorld(stuck_workers={1})
    stuck = functools.partial(_stuck_pids, node_marker(NODE, doc.env.tmp / "state"))
    try:
        running = asyncio.run_coroutine_threadsafe(
            doc.client.run("echo done", capture=True, timeout=2.0), doc.env.lt.loop)
        wait_until(stuck, bool)  # there, stopped, while its session lasts
        results = running.result(30)
        assert results[0].ok and "done" in results[0].stdout
        assert results[1].timed_out and "done" not in results[1].stdout
    finally:
        doc.env.host.world = None
    # the closed channel killed it: nothing of the stuck command is left on worker 1
    wait_until(stuck, lambda pids: not pids)


def _stuck_pids(marker: str) -> list[int]:
    """The node's processes still in the stuck-worker wrapper (found by the node's marker)."""
    out = []
    for pid in find_marked_pids(f"{NODE_ENV}={marker}".encode()):
        try:
            if b"tpuctl-stuck" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            pass
    return out
