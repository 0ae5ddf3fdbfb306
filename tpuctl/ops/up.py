"""`up RECIPE`: create → sync → secrets → bootstrap → launch → (ready) → tail, each step
skipped when already done, with a preemption policy; `serve`, the short form of a serving
recipe, runs the same steps."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tpuctl.errors import NotFoundError, PreemptedError, TpuctlError, UsageError
from tpuctl.ops import bootstrap as bootstrap_op
from tpuctl.ops import launch as launch_op
from tpuctl.ops import runs as runs_op
from tpuctl.ops import secrets as secrets_op
from tpuctl.ops import sync as sync_op
from tpuctl.ops.access import raise_if_gone
from tpuctl.ops.create import CreateRequest, create_in_zone
from tpuctl.ops.nodes import start_delete
from tpuctl.ops.ports import Ports
from tpuctl.ops.prepared import Prepared, launch_spec, prepare_file, venv_spec
from tpuctl.ops.session import SliceSession, open_session
from tpuctl.paths import private_dir, tpuctl_home
from tpuctl.prices import Price
from tpuctl.vmoptions import VmOptions

ON_PREEMPT = ("fail", "recreate")


@dataclass(frozen=True)
class Step:
    name: str
    outcome: str  # done, skipped, cached, reused, recreate, failed
    detail: str
    seconds: float


@dataclass
class UpResult:
    node: str
    run_id: str = "-"
    exit_code: int | None = None  # the job's, once followed to its end
    url: str | None = None
    steps: list[Step] = field(default_factory=list)
    # the node is left up once the run ended: what it keeps costing (the reminder)
    left_up: Price | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "node": self.node, "run_id": self.run_id, "exit_code": self.exit_code or 0,
            "url": self.url,
            "steps": [{"step": s.name, "outcome": s.outcome, "detail": s.detail,
                       "seconds": round(s.seconds, 2)} for s in self.steps]}
        if self.left_up is not None:
            d["left_up_price_per_hour"] = self.left_up.to_dict()
        return d


@dataclass(frozen=True)
class UpRequest:
    recipe: Path
    name: str | None = None  # default: the recipe's name, else its file's stem
    replace: bool = False  # stop a live run first
    detach: bool = False  # return after launch (or readiness): do not follow the job
    run_id: str | None = None
    on_preempt: str = "fail"  # or recreate: delete, create again, run again
    max_recreates: int = 3
    ready_timeout: float | None = None  # default: the recipe's timeouts.ready
    zone: str | None = None  # --zone; else the recipe's zone; else the configured one


@dataclass(frozen=True)
class UpOptions:
    """How the loop runs, whatever asked for it (`up` or `serve`)."""

    replace: bool = False
    follow: bool = True
    run_id: str | None = None
    on_preempt: str = "fail"
    max_recreates: int = 3
    ready_timeout: float | None = None
    log_dir: Path | None = None  # default ~/.tpuctl/logs


class UpEvents:
    """What `up` reports while it works (a renderer overrides what it shows)."""

    def begin(self, node: str) -> None:
        """The recipe is read and checked: the loop starts on this node."""

    def step(self, s: Step) -> None:
        """A step finished (or a preemption is being recovered)."""

    def line(self, index: int, line: str) -> None:
        """A line of the job's log on worker `index`, as it arrives."""

    def state(self, state: str) -> None:
        """The node's or the run's state, worth a line."""

    def bootstrap(self, w: bootstrap_op.WorkerBootstrap) -> None:
        """A worker's bootstrap progressed."""

    def activity(self, what: str) -> None:
        """The step under way (a spinner's text, no line of its own)."""


def check_options(o: UpOptions) -> None:
    if o.on_preempt not in ON_PREEMPT:
        raise UsageError(f"invalid --on-preempt {o.on_preempt!r}", hint="use fail or recreate")
    if o.max_recreates < 0:
        raise UsageError(f"invalid --max-recreates {o.max_recreates}", hint="use 0 or more")
    if o.run_id:
        launch_op.validate_run_id(o.run_id)


def up_recipe(ports: Ports, req: UpRequest, events: UpEvents | None = None) -> UpResult:
    """The `up` command: everything checkable locally first, then the loop."""
    options = UpOptions(replace=req.replace, follow=not req.detach, run_id=req.run_id,
                        on_preempt=req.on_preempt, max_recreates=req.max_recreates,
                        ready_timeout=req.ready_timeout)
    check_options(options)
    p = prepare_file(req.recipe, req.name)
    zone = req.zone or p.recipe.zone
    return up(ports.in_zone(zone) if zone else ports, p, options, events)


def up(ports: Ports, p: Prepared, options: UpOptions, events: UpEvents | None = None
       ) -> UpResult:
    """The loop, with a preemption policy: `fail` (exit 6) or `recreate` (delete the node,
    create it again, re-sync, re-bootstrap, relaunch with TPUCTL_RESTART_COUNT set)."""
    events = events or UpEvents()
    check_options(options)
    events.begin(p.name)
    result = UpResult(node=p.name)
    logs = LocalLogs(options.log_dir or tpuctl_home() / "logs", p.name)
    attempt = 0
    try:
        while True:
            try:
                _Attempt(ports, p, options, result, events, logs, attempt).run()
                return result
            except PreemptedError as e:
                if options.on_preempt != "recreate" or attempt >= options.max_recreates:
                    raise
                t = time.monotonic()
                _delete_quietly(ports, p.name)
                attempt += 1
                s = Step("preempted", "recreate",
                         f"{e.message}; recreating ({attempt}/{options.max_recreates})",
                         time.monotonic() - t)
                result.steps.append(s)
                events.step(s)
    finally:
        logs.close()


def _delete_quietly(ports: Ports, name: str) -> None:
    try:
        ports.cloud.wait_operation(start_delete(ports, ports.cloud.get_node(name)),
                                   timeout=900)
    except NotFoundError:
        pass


class LocalLogs:
    """Every streamed line also goes to ~/.tpuctl/logs/<node>/<run>/worker<i>.log, so the
    logs of every attempt survive a preempted node (whose disks go with it)."""

    def __init__(self, base: Path, node: str) -> None:
        self.base = base / node
        self.run_id = "-"
        self._files: dict[tuple[str, int], IO[str]] = {}

    def write(self, index: int, line: str) -> None:
        key = (self.run_id, index)
        f = self._files.get(key)
        if f is None:
            d = private_dir(self.base / self.run_id)  # job logs are their user's only
            fd = os.open(d / f"worker{index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            f = self._files[key] = open(fd, "a", encoding="utf-8")
        f.write(line + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class _Attempt:
    """One pass over the steps (a recreated node gets a new one)."""

    def __init__(self, ports: Ports, p: Prepared, options: UpOptions, result: UpResult,
                 events: UpEvents, logs: LocalLogs, attempt: int) -> None:
        self.ports, self.p, self.o, self.result = ports, p, options, result
        self.events, self.logs, self.attempt = events, logs, attempt

    def step(self, name: str, outcome: str, detail: str, t0: float) -> None:
        s = Step(name, outcome, detail, time.monotonic() - t0)
        self.result.steps.append(s)
        self.events.step(s)

    def run(self) -> None:
        r = self.p.recipe
        t0 = time.monotonic()
        node = self.p.node
        created = create_in_zone(self.ports, CreateRequest(
            name=self.p.name, accelerator_type=r.accelerator, runtime=r.runtime, spot=r.spot,
            timeout=r.timeouts.create, capacity=node.capacity if node else None,
            vm=node.vm if node else VmOptions(), slices=r.slices, internal_ips=r.internal_ips,
            network=r.network, subnetwork=r.subnetwork, tags=tuple(r.tags)),
            progress=self.events.state)
        sl = created.slice
        self.step("create", "done" if created.created else "reused",
                  f"{sl.name} {sl.accelerator_type} {sl.state}, {len(sl.workers)} workers", t0)
        asyncio.run(self._on_workers())

    async def _on_workers(self) -> None:
        session = open_session(self.ports, self.p.name)
        try:
            await self._sync(session)
            await self._secrets(session)
            venv = await self._bootstrap(session)
            run_id = await self._launch(session, venv)
            if await self._ready(session, run_id):
                return  # a server keeps running: `status`, `generate`, `down`
            if self.o.follow:
                await self._follow(session, run_id)
        except PreemptedError:
            raise
        except TpuctlError as e:
            # a worker lost mid-step may be a preempted node: say so (exit 6), not "failed"
            await asyncio.to_thread(raise_if_gone, self.ports.cloud, self.p.name,
                                    context=f"({e.message})",
                                    hint="`tpuctl up --on-preempt recreate` retries "
                                    "automatically")
            raise
        finally:
            await session.close()

    async def _sync(self, session: SliceSession) -> None:
        t = time.monotonic()
        self.events.activity("syncing")
        synced = await sync_op.sync(session, self.p.repo, self.p.recipe.sync.via)
        untracked = ""
        if synced.untracked:
            untracked = (f"; not synced (untracked): {', '.join(synced.untracked[:3])}"
                         + (" ..." if len(synced.untracked) > 3 else ""))
        where = (" already on every worker" if synced.noop
                 else f" on {len(synced.changed)} workers")
        self.step("sync", "skipped" if synced.noop else "done",
                  f"{synced.repo}@{synced.sha[:12]}{where}{untracked}", t)

    async def _secrets(self, session: SliceSession) -> None:
        if self.p.secrets is None:
            return
        t = time.monotonic()
        self.events.activity("pushing secrets")
        pushed = await secrets_op.push(session, self.p.secrets)
        self.step("secrets", "done", f"{len(pushed.keys)} keys to {pushed.workers} workers", t)

    async def _bootstrap(self, session: SliceSession) -> str:
        from tpuctl.ops.startup import wait_startup

        t = time.monotonic()
        started = await wait_startup(session, timeout=self.p.recipe.timeouts.bootstrap,
                                     on_state=self.events.activity)
        if started.ran:
            self.step("startup-script", "done",
                      f"finished on {started.workers} workers", t)
            t = time.monotonic()
        if self.p.node and self.p.node.mounts:
            from tpuctl.ops.disks import mount_disks

            self.events.activity("mounting data disks")
            paths = await mount_disks(session, self.p.node.mounts)
            self.step("disks", "done", f"{', '.join(paths)} on {len(session.indices)} workers",
                      t)
            t = time.monotonic()
        self.events.activity("bootstrapping")
        spec = venv_spec(self.p, session.slice.runtime_version)
        boot = await bootstrap_op.bootstrap(session, spec,
                                            timeout=self.p.recipe.timeouts.bootstrap,
                                            on_update=self.events.bootstrap)
        self.step("bootstrap", "cached" if boot.cached else "done",
                  f"venv {boot.hash}" + (" already built" if boot.cached else ""), t)
        return spec.hash

    async def _launch(self, session: SliceSession, venv: str) -> str:
        t = time.monotonic()
        self.events.activity("launching")
        env = dict(self.p.recipe.env)
        run_id = self.o.run_id
        if self.attempt:
            env["TPUCTL_RESTART_COUNT"] = str(self.attempt)
            run_id = f"{run_id}-r{self.attempt}" if run_id else None
        spec = launch_spec(self.p, session.slice, run_id=run_id, replace_run=self.o.replace,
                           env=env)
        launched = await launch_op.launch(session, spec)
        self.result.run_id = self.logs.run_id = launched.run_id
        self.step("launch", "done", f"run {launched.run_id} on {launched.workers} workers", t)
        return launched.run_id

    async def _ready(self, session: SliceSession, run_id: str) -> bool:
        """Wait for a recipe's ready line (and a server's health); True for a server."""
        r = self.p.recipe
        pattern = r.effective_ready_pattern
        if pattern is None:
            return False
        from tpuctl.ops.ready import ReadySpec, wait_ready

        t = time.monotonic()
        serve = r.serve
        ready = await wait_ready(session, run_id, ReadySpec(
            pattern=pattern, port=serve.port if serve else None,
            health_path=serve.health_path if serve else "/health_generate",
            peer_pattern=serve.peer_pattern if serve else None),
            timeout=self.o.ready_timeout or r.timeouts.ready or 900.0,
            on_state=self.events.state)
        self.result.url = ready.url
        self.step("ready", "done", f"{ready.url or 'ready line seen'}", t)
        return serve is not None

    async def _follow(self, session: SliceSession, run_id: str) -> None:
        t = time.monotonic()
        self.events.activity(f"running {run_id}")

        def tee(i: int, line: str) -> None:
            self.logs.write(i, line)
            self.events.line(i, line)

        tailed = await runs_op.tail(session, run_id, lines=None, follow=True, on_line=tee)
        self.result.exit_code = tailed.exit_code
        failed = tailed.first_failed
        detail = (f"exit {tailed.exit_code}"
                  + (f", first failure on w{failed}" if failed is not None else ""))
        self.step("run", "done" if tailed.exit_code == 0 else "failed", detail, t)
        from tpuctl.prices import price_for

        sl = session.slice
        self.result.left_up = price_for(sl.accelerator_type, sl.zone, sl.spot)
