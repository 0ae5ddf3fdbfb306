"""In-memory fakes of the ports, shared by the fast tests of the operations' logic.

`FakeCloud` keeps nodes, operations and queued resources in memory, with stockouts and
preemption on demand; `FakeFleet` plays the workers of every node: it answers tpuctl's worker
scripts (tpuctl/remote/*.sh) by their output protocol, keeping each worker's checkout, venvs,
secrets and runs. What they do not model (timing, SSH, bash) the end-to-end tests on the
emulator cover; these check the rules: which calls, in which order, what result.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tpuctl.accelerators import parse_accelerator
from tpuctl.errors import CloudError, NotFoundError, UsageError
from tpuctl.ledger import LedgerEvent
from tpuctl.model import Access, NodeSpec, Slice, Worker
from tpuctl.ops.ports import HttpReply, Ports
from tpuctl.remote import FRAME_MAGIC, INSTALL_SCRIPTS, script_call
from tpuctl.workers.base import (
    PUBLICKEY_DENIED,
    Listener,
    OnOutput,
    SshTarget,
    WorkerResult,
)

RESOURCE_EXHAUSTED = 8
_KEY_ENTRY = "alice:ssh-ed25519 AAAAfake tpuctl"  # MemoryLocal's key, as ssh-keys holds it


@dataclass
class World:
    """What every zone of one fake cloud shares."""

    caller: str = "alice"
    runtimes: list[str] = field(default_factory=lambda: [
        "tpu-ubuntu2204-base", "v2-alpha-tpuv5", "v2-alpha-tpuv5-lite", "v2-alpha-tpuv6e"])
    nodes: dict[tuple[str, str], Slice] = field(default_factory=dict)  # (zone, name)
    stockout_zones: set[str] = field(default_factory=set)
    op_errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # "verb zone name", in order
    ops: Any = field(default_factory=lambda: itertools.count(1))
    # get_node answers this many times with the state before READY after a create
    creating_polls: int = 0
    # node -> how many of its last workers have not registered (get_node leaves them out)
    missing: dict[str, int] = field(default_factory=dict)
    _pending: dict[tuple[str, str], int] = field(default_factory=dict)
    # how many times a node of that name was made: a new one has fresh disks (FakeFleet)
    generation: dict[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # nodes' createTime
    queued_errors: dict[str, str] = field(default_factory=dict)  # FAILED queued resources
    specs: dict[str, NodeSpec] = field(default_factory=dict)  # what each create asked for
    project_metadata: dict[str, str] = field(default_factory=dict)  # Compute's, per project
    account: str = "alice@example.com"  # the signed-in account (OS Login)
    oslogin_keys: list[str] = field(default_factory=list)  # imported into its profile


class FakeCloud:
    endpoint = None

    def __init__(self, zone: str = "zone-a", world: World | None = None,
                 project: str = "proj") -> None:
        self.world = world or World()
        self.project, self.zone = project, zone

    # -- test controls --------------------------------------------------------------------------
    def add_node(self, name: str, *, accelerator: str = "v6e-16", state: str = "READY",
                 labels: dict[str, str] | None = None, owner: str | None = "alice",
                 runtime: str = "v2-alpha-tpuv6e", spot: bool = False,
                 managed: bool = True, queued_resource: str = "", keyed: bool = False,
                 external_ips: bool = True, metadata: dict[str, str] | None = None) -> Slice:
        """A node as the API would list it; `keyed`: its ssh-keys already hold the key of
        `MemoryLocal` (as a node this user created has)."""
        lab = dict(labels or {})
        if managed:
            lab.update({"managed-by": "tpuctl", "tpuctl-task": name})
            if owner:
                lab["tpuctl-owner"] = owner
        meta = {"ssh-keys": _KEY_ENTRY} if keyed else {}
        sl = _node(self, name, accelerator, runtime, state, lab, {**meta, **(metadata or {})},
                   spot, queued_resource, external_ips)
        self.world.nodes[(self.zone, name)] = sl
        self.world.generation[name] = self.world.generation.get(name, 0) + 1
        return sl

    def set_state(self, name: str, state: str) -> None:
        key = (self.zone, name)
        self.world.nodes[key] = replace(self.world.nodes[key], state=state)

    @property
    def calls(self) -> list[str]:
        return self.world.calls

    def changes(self) -> list[str]:
        """The calls that change something, in order."""
        verbs = ("create", "delete", "set_metadata", "oslogin_import")
        return [c for c in self.world.calls if c.startswith(verbs)]

    # -- the Cloud port -------------------------------------------------------------------------
    def in_zone(self, zone: str) -> FakeCloud:
        return FakeCloud(zone, self.world, self.project)

    def caller(self) -> str:
        return self.world.caller

    def _op(self, verb: str, name: str) -> str:
        self.world.calls.append(f"{verb} {self.zone} {name}")
        return f"operations/{next(self.world.ops)}"

    def get_node(self, name: str) -> Slice:
        key = (self.zone, name)
        if key not in self.world.nodes:
            raise NotFoundError(f"node {name!r} in {self.zone}: not found")
        sl = self.world.nodes[key]
        left = self.world._pending.get(key, 0)
        if left:
            self.world._pending[key] = left - 1
            return replace(sl, state="CREATING", workers=())
        missing = self.world.missing.get(name, 0)
        if missing:
            return replace(sl, workers=sl.workers[:max(0, len(sl.workers) - missing)])
        return sl

    def list_nodes(self) -> list[Slice]:
        return [sl for (z, _), sl in self.world.nodes.items() if z == self.zone]

    def _create(self, spec: NodeSpec, verb: str, queued: str = "") -> str:
        op = self._op(verb, spec.name)
        if (self.zone, spec.name) in self.world.nodes:
            raise UsageError(f"creating node {spec.name!r}: already exists")
        if spec.name in self.world.queued_errors and verb == "create_queued_resource":
            return op  # FAILED at once: no node
        if self.zone in self.world.stockout_zones:
            self.world.op_errors[op] = (RESOURCE_EXHAUSTED, f"no {spec.accelerator_type} "
                                        f"capacity in {self.zone}")
            return op
        names = [spec.name] if spec.slices <= 1 else [
            f"{spec.name}-{i}" for i in range(spec.slices)]  # a multislice group's nodes
        for name in names:
            self.world.nodes[(self.zone, name)] = _node(
                self, name, spec.accelerator_type, spec.runtime_version, "READY",
                dict(spec.labels), dict(spec.metadata), spec.spot, queued,
                spec.network.external_ips)
            self.world._pending[(self.zone, name)] = self.world.creating_polls
            self.world.generation[name] = self.world.generation.get(name, 0) + 1
        self.world.specs[spec.name] = spec
        if spec.slices > 1:  # the group's workers (FakeFleet keys them by its name) are new
            self.world.generation[spec.name] = self.world.generation.get(spec.name, 0) + 1
        return op

    def create_node(self, spec: NodeSpec) -> str:
        return self._create(spec, "create_node")

    def create_queued_resource(self, spec: NodeSpec) -> str:
        qr = f"projects/{self.project}/locations/{self.zone}/queuedResources/{spec.name}"
        return self._create(spec, "create_queued_resource", qr)

    def queued_resource_state(self, name: str) -> str:
        if name in self.world.queued_errors:
            return "FAILED"
        qr = f"/queuedResources/{name}"
        members = [sl for (z, _), sl in self.world.nodes.items()
                   if z == self.zone and sl.queued_resource.endswith(qr)]
        if members and all(sl.state == "READY" for sl in members):
            return "ACTIVE"
        return "SUSPENDED" if members else "WAITING_FOR_RESOURCES"

    def queued_resource_error(self, name: str) -> str:
        return self.world.queued_errors.get(name, "")

    def delete_node(self, name: str) -> str:
        op = self._op("delete_node", name)
        if self.world.nodes.pop((self.zone, name), None) is None:
            raise NotFoundError(f"deleting node {name!r}: not found")
        return op

    def delete_queued_resource(self, name: str) -> str:
        op = self._op("delete_queued_resource", name)
        for key, sl in list(self.world.nodes.items()):
            if sl.queued_resource.endswith(f"/queuedResources/{name}"):
                del self.world.nodes[key]
        return op

    def set_metadata(self, name: str, metadata: dict[str, str]) -> str:
        key = (self.zone, name)
        if key not in self.world.nodes:
            raise NotFoundError(f"updating metadata of node {name!r}: not found")
        op = self._op("set_metadata", name)
        self.world.nodes[key] = replace(self.world.nodes[key], metadata=dict(metadata))
        return op

    def list_runtime_versions(self) -> list[str]:
        return list(self.world.runtimes)

    def project_metadata(self) -> dict[str, str]:
        self.world.calls.append(f"project_metadata {self.project}")
        return dict(self.world.project_metadata)

    def account(self) -> str:
        return self.world.account

    def oslogin_user(self, public_key: str) -> tuple[str, bool]:
        user = self.world.account.replace("@", "_").replace(".", "_")
        if public_key in self.world.oslogin_keys:
            return user, False
        self.world.calls.append(f"oslogin_import {self.world.account}")
        self.world.oslogin_keys.append(public_key)
        return user, True

    def operation_error(self, op_name: str) -> tuple[int, str] | None:
        return self.world.op_errors.get(op_name)

    def wait_operation(self, op_name: str, *, timeout: float,
                       on_poll: Callable[[], None] | None = None) -> None:
        if on_poll:
            on_poll()
        err = self.world.op_errors.get(op_name)
        if err:
            raise CloudError(f"operation failed: {err[1]}")


def _node(cloud: FakeCloud, name: str, accelerator: str, runtime: str, state: str,
          labels: dict[str, str], metadata: dict[str, str], spot: bool, qr: str,
          external_ips: bool = True) -> Slice:
    hosts = parse_accelerator(accelerator).hosts
    workers = tuple(Worker(i, f"10.0.0.{i + 2}", 22, f"ssh-ed25519 KEY{i}",
                           external_ip=f"34.0.0.{i + 2}" if external_ips else None,
                           hostname=f"t1v-n-fake-w-{i}")
                    for i in range(hosts))
    created = dt.datetime.fromtimestamp(cloud.world.clock(), dt.timezone.utc).isoformat()
    return Slice(name=name, project=cloud.project, zone=cloud.zone,
                 accelerator_type=accelerator, runtime_version=runtime, state=state,
                 labels=labels, metadata=metadata, workers=workers, spot=spot,
                 queued_resource=qr, create_time=created)


@dataclass
class FakeWorker:
    """One worker's tpuctl state, as the remote scripts keep it on disk."""

    commit: str = "none"
    venvs: set[str] = field(default_factory=set)
    secrets: list[str] = field(default_factory=list)  # key names
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> facts
    latest: str = "-"


Handler = Callable[[str, int, list[str], bytes], "tuple[int | None, str, list[str]] | None"]


class FakeFleet:
    """The workers of every node, by node name. `script_calls` logs (node, worker, script,
    args); `job_exit` is the exit code a launched job ends with per worker; `on_follow` may
    change the world while a run is followed (preempt the node) and answer instead."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.workers: dict[tuple[str, int, int], FakeWorker] = {}
        self.script_calls: list[tuple[str, int, str, tuple[str, ...]]] = []
        self.job_exit: dict[int, int] = {}
        self.job_lines: list[str] = ["step=1 loss=0.5"]
        self.unreachable: set[int] = set()
        # worker -> how many more connections refuse our key (a guest agent still applying it)
        self.deny: dict[int, int] = {}
        self.denied = 0
        self.launched_env: list[dict[str, str]] = []
        self.on_follow: Handler | None = None
        self.ready = True  # servers come up at once
        self.clock: Callable[[], float] = time.time  # when runs start and end (runs.sh)
        self.top_output: dict[int, str] = {}  # what top.sh prints, per worker (default: made)
        self.startup: dict[int, str] = {}  # remote/startup.sh's answer per worker
        # remote/doctor.sh's lines per worker (a healthy worker's by default); a worker's
        # clock as `date +%s.%N` reads it, seconds off this machine's
        self.doctor_lines: dict[int, list[str]] = {}
        self.clock_skew: dict[int, float] = {}

    def worker(self, node: str, index: int) -> FakeWorker:
        """The worker of the node as it is now (a recreated node's disks are new)."""
        gen = self.cloud.world.generation.get(node, 0)
        return self.workers.setdefault((node, gen, index), FakeWorker())

    def scripts(self, node: str | None = None) -> list[str]:
        """`script sub` per call in order (worker 0's calls only, as one line each)."""
        return [f"{s} {a[0]}".strip() if a and s in ("sync", "bootstrap", "launch", "secrets")
                else s for n, i, s, a in self.script_calls if i == 0 and node in (None, n)]

    def connect(self, targets: Sequence[SshTarget], *, key_path: Path, pool: str, shared: bool,
                connect_timeout: float, connect_attempts: int, max_concurrency: int
                ) -> FakeWorkers:
        return FakeWorkers(self, pool, targets)

    def answer(self, node: str, i: int, script: str, args: list[str], stdin: bytes
               ) -> tuple[int | None, str, list[str]]:
        w = self.worker(node, i)
        payload = stdin.split(b"\n", 1)[1] if stdin.startswith(FRAME_MAGIC) else stdin
        if script == "sync":
            if args[0] == "head":
                return 0, f"commit={w.commit}", []
            changed = "0" if w.commit == args[2] else "1"
            w.commit = args[2]
            return 0, f"commit={w.commit} changed={changed}", []
        if script == "secrets":
            if args[0] == "push":
                w.secrets = [ln[7:].split("=", 1)[0] for ln in payload.decode().splitlines()]
                return 0, "", []
            return 0, " ".join(w.secrets), []
        if script == "bootstrap":
            cached = args[1] in w.venvs
            w.venvs.add(args[1])
            return 0, f"state=done cached={int(cached)} exit=0", []
        if script == "launch":
            return self._launch(node, i, w, args, payload)
        if script == "status":
            run = w.runs.get(w.latest if args[0] == "-" else args[0])
            if run is None:
                return 0, f"run={args[0]} state=missing", []
            state = "exited" if run["exit"] is not None else "running"
            code = "-" if run["exit"] is None else run["exit"]
            return 0, f"run={run['id']} state={state} exit_code={code} log_lines=1", []
        if script == "follow":
            if self.on_follow is not None:
                got = self.on_follow(node, i, args, payload)
                if got is not None:
                    return got
            run = w.runs.get(w.latest if args[0] == "-" else args[0])
            if run is None:
                return 3, "", [f"no run {args[0]} on worker {i}"]
            run["exit"] = self.job_exit.get(i, 0)
            run.setdefault("ended", self.clock())
            meta = f"tpuctl-run={run['id']} exit_code={run['exit']} alive=0"
            return 0, "\n".join(self.job_lines), [meta]
        if script == "stop":
            run = w.runs.get(w.latest if args[0] == "-" else args[0])
            if run is None:
                return 0, f"run={args[0]} result=missing", []
            result = "terminated" if run["exit"] is None else "not-running"
            run["exit"] = 143 if run["exit"] is None else run["exit"]
            run.setdefault("ended", self.clock())
            return 0, f"run={run['id']} result={result} exit_code={run['exit']}", []
        if script == "startup":  # the node's startup script, finished fine unless told
            return 0, self.startup.get(i, "startup=done status=0"), []
        if script == "probe":  # the ready line seen, rank 0's health answered
            return 0, f"log={int(self.ready)} http={200 if self.ready else '000'}", []
        if script == "runs":
            return 0, "\n".join(_runs_line(r) for r in w.runs.values()), []
        if script == "top":
            if i in self.top_output:
                return 0, self.top_output[i], []
            run = w.runs.get(w.latest)
            line = "run run=- state=missing" if run is None else _runs_line(run)
            return 0, line + "\nhost now=1 cpu_busy=1 cpu_total=2 clk_tck=100\ntpu source=none " \
                "reason=nothing answered\nlog ", []
        if script == "doctor":  # a group's hosts number themselves within their slice
            return 0, "\n".join(self.doctor_lines.get(
                i, healthy_doctor(self._within_slice(node, i), args))), []
        if script == "" and args == ["date +%s.%N"]:
            return 0, f"{time.time() + self.clock_skew.get(i, 0.0):.6f}", []
        return 0, "", []  # install, ...

    def _within_slice(self, node: str, i: int) -> int:
        spec = self.cloud.world.specs.get(node)
        if spec is None or spec.slices <= 1:
            return i
        return i % parse_accelerator(spec.accelerator_type).hosts

    def _launch(self, node: str, i: int, w: FakeWorker, args: list[str], payload: bytes
                ) -> tuple[int | None, str, list[str]]:
        action, run_id, _, _, venv, commit, replace_run = args[:7]
        if venv not in ("-", "current") and venv not in w.venvs:
            return 20, "no ready venv", []
        if commit != "-" and commit != w.commit:
            return 21, f"checkout at {w.commit[:12]}", []
        alive = [r for r in w.runs.values() if r["exit"] is None]
        if alive and replace_run != "1":
            return 22, f"run {alive[0]['id']} is alive", []
        if action == "start":
            for r in alive:
                r["exit"] = 143
                r.setdefault("ended", self.clock())
            env = payload.partition(b"\0")[2].decode()
            pairs = (ln[7:].split("=", 1) for ln in env.splitlines() if ln.startswith("export "))
            self.launched_env.append({k: shlex.split(v)[0] for k, v in pairs})
            w.runs[run_id] = {"id": run_id, "exit": None, "started": self.clock()}
            w.latest = run_id
        return 0, "", []


def _runs_line(run: dict[str, Any]) -> str:
    """A run as runs.sh (and top.sh's `run` line) print it."""
    started = dt.datetime.fromtimestamp(run.get("started", 0), dt.timezone.utc)
    state = "running" if run["exit"] is None else "exited"
    ended = "-" if run["exit"] is None else run.get("ended", run.get("started", 0))
    code = "-" if run["exit"] is None else run["exit"]
    return (f"run={run['id']} state={state} exit_code={code} heartbeat_age=1 "
            f"started_at={started.strftime('%Y-%m-%dT%H:%M:%SZ')} ended_at={ended}")


class FakeWorkers:
    """The `Workers` port of one node, answered by its `FakeFleet`."""

    def __init__(self, fleet: FakeFleet, pool: str, targets: Sequence[SshTarget]) -> None:
        self.fleet, self.targets = fleet, list(targets)
        self.node = json.loads(pool)[-1]  # worker_cache.node_identity: [.., .., .., name]

    async def run(self, command: str, *, indices: Sequence[int] | None = None,
                  timeout: float | None = None, stdin: bytes | None = None,
                  on_output: OnOutput | None = None, capture: bool = False
                  ) -> list[WorkerResult]:
        call = script_call(command)
        script, args = call if call is not None else ("", [command])
        out = []
        for i in sorted(indices if indices is not None else [t.index for t in self.targets]):
            if i in self.fleet.unreachable:
                out.append(WorkerResult(i, None, error="connection refused", unreached=True))
                continue
            if self.fleet.deny.get(i, 0) > 0:
                self.fleet.deny[i] -= 1
                self.fleet.denied += 1
                out.append(WorkerResult(i, None, unreached=True, error=(
                    f"worker {i} (u@h:22): {PUBLICKEY_DENIED}: key is not authorized")))
                continue
            if script != INSTALL_SCRIPTS:
                self.fleet.script_calls.append((self.node, i, script, tuple(args)))
            code, stdout, stderr = self.fleet.answer(self.node, i, script, args, stdin or b"")
            if on_output is not None:
                for line in stdout.splitlines():
                    on_output(i, "stdout", line)
                for line in stderr:
                    on_output(i, "stderr", line)
            error = None if code is not None else "connection lost"
            out.append(WorkerResult(i, code, error=error,
                                    stdout=stdout + "\n" if capture and stdout else ""))
        return out

    async def forward_local(self, index: int, local_port: int, dest_host: str,
                            dest_port: int) -> Listener:
        raise NotImplementedError

    def retarget(self, targets: Sequence[SshTarget], *, connect_timeout: float,
                 connect_attempts: int) -> None:
        self.targets = list(targets)

    async def close(self) -> None:
        return None


class MemoryLocal:
    """The `Local` port in memory: a fixed key, no files, no worker cache."""

    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.pinned: list[str] = []
        self.accesses: dict[str, Access] = {}  # what ensure_access left, by node

    def ensure_key(self) -> tuple[Path, str]:
        return Path("/nonexistent/tpuctl_ed25519"), "ssh-ed25519 AAAAfake tpuctl"

    def public_key(self) -> str | None:
        return self.ensure_key()[1]

    def key_path(self) -> Path:
        return Path("/nonexistent/tpuctl_ed25519")

    def username(self) -> str:
        return self.user

    def known_hosts_path(self, sl: Slice) -> Path:
        return Path("/nonexistent/known_hosts") / sl.name

    def pin_host_keys(self, sl: Slice) -> Path:
        self.pinned.append(sl.name)
        return self.known_hosts_path(sl)

    def cached_access(self, cloud: Any, name: str, *, public_key: str) -> Access | None:
        return None  # every command asks the (fake) API

    def cache_access(self, cloud: Any, access: Access, *, public_key: str,
                     targets: Sequence[SshTarget] = ()) -> None:
        self.accesses[access.slice.name] = access

    def key_change(self, cloud: Any, name: str) -> float:
        got = self.accesses.get(name)
        return got.login.keys_changed_at if got else 0.0

    def forget_slice(self, cloud: Any, name: str) -> None:
        return None


class NoHttp:
    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float
                        ) -> HttpReply:
        raise NotImplementedError


class MemoryLedger:
    """The `Ledger` port in memory (tpuctl/ledger.py keeps it in a file)."""

    def __init__(self) -> None:
        self.events: list[LedgerEvent] = []

    def record(self, event: LedgerEvent) -> None:
        self.events.append(event)

    def read(self) -> list[LedgerEvent]:
        return list(self.events)


def fake_ports(cloud: FakeCloud | None = None) -> tuple[Ports, FakeCloud, FakeFleet]:
    cloud = cloud or FakeCloud()
    fleet = FakeFleet(cloud)
    ports = Ports(cloud=cloud, connect=fleet.connect, local=MemoryLocal(cloud.world.caller),
                  http=NoHttp(), ledger=MemoryLedger())
    return ports, cloud, fleet


def healthy_doctor(index: int, args: Sequence[str]) -> list[str]:
    """What remote/doctor.sh prints on a healthy worker (venv "current", ADDR:PORT)."""
    addr, _, port = args[1].rpartition(":")
    return ["check=disk-home status=ok free_mb=90000 used_pct=10",
            "check=disk-tmp status=ok free_mb=90000 used_pct=10",
            "check=tpu status=ok holders=0", "check=lockfile status=ok",
            "check=python status=ok version=3.11.7", "check=venv status=ok ensurepip=24.0",
            "check=packages status=ok jax=0.4.35 jaxlib=0.4.35 libtpu=0.0.5",
            "check=clock status=ok epoch=1.0",
            f"check=metadata status=ok worker={index} workers=4",
            f"check=port status=ok addr={addr} port={port} result=closed"]
