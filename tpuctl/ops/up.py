"""`up RECIPE`: create → sync → secrets → bootstrap → launch → tail, each step skipped when
already done; `down NAME`: stop + delete."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tpuctl import gitrepo
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
from tpuctl.ops.session import open_session
from tpuctl.paths import private_dir, tpuctl_home
from tpuctl.recipes.schema import Recipe


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
    exit_code: int | None = None
    url: str | None = None
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "run_id": self.run_id, "exit_code": self.exit_code or 0,
                "url": self.url,
                "steps": [{"step": s.name, "outcome": s.outcome, "detail": s.detail,
                           "seconds": round(s.seconds, 2)} for s in self.steps]}


@dataclass(frozen=True)
class Prepared:
    """Everything checked locally before any API call or worker is touched."""

    recipe: Recipe
    name: str
    repo: gitrepo.RepoState
    requirements: bytes
    secrets: dict[str, str] | None
    serve_plan: Any = None  # a planner ServePlan for serving recipes


def prepare(recipe: Recipe, name: str, recipe_path: Path) -> Prepared:
    repo = sync_op.plan(recipe_path.resolve().parent, "HEAD", recipe.sync.via,
                        recipe.sync.allow_dirty)
    req = b""
    if recipe.requirements:
        path = repo.root / recipe.requirements
        if not path.is_file():
            raise UsageError(f"requirements file {recipe.requirements!r} not found in {repo.root}",
                             hint="the path is relative to the repository root")
        req = path.read_bytes()
    secrets = None
    if recipe.secrets:
        spath = Path(recipe.secrets).expanduser()
        if not spath.is_absolute():
            spath = repo.root / spath
        if not spath.is_file():
            raise UsageError(f"secrets file {recipe.secrets!r} not found",
                             hint="create it (KEY=VALUE lines) or remove `secrets:`")
        secrets = secrets_op.parse_env(spath.read_text(), str(recipe.secrets))
    plan = None
    if recipe.serve is not None:
        from tpuctl.ops.serve import plan_for

        plan = plan_for(recipe, repo.root)
    return Prepared(recipe, name, repo, req, secrets, plan)


def venv_spec(p: Prepared, runtime: str) -> bootstrap_op.BootstrapSpec:
    r = p.recipe
    return bootstrap_op.BootstrapSpec(
        requirements=p.requirements, python=r.python, torch=r.torch,
        project_dir=f"work/{p.repo.name}" if r.project_install else None, runtime=runtime)


def workdir(p: Prepared) -> str:
    base = f"work/{p.repo.name}"
    return f"{base}/{p.recipe.workdir.strip('/')}" if p.recipe.workdir else base


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
            f = self._files[key] = open(fd, "a", encoding="utf-8")  # noqa: SIM115
        f.write(line + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def up(ports: Ports, p: Prepared, *, replace: bool = False, follow: bool = True,
       on_step: Callable[[Step], None], on_line: runs_op.OnLine,
       on_state: Callable[[str], None] = lambda s: None,
       on_bootstrap: Callable[[bootstrap_op.WorkerBootstrap], None] | None = None,
       run_id: str | None = None, on_preempt: str = "fail", max_recreates: int = 3,
       log_dir: Path | None = None, ready_timeout: float | None = None,
       on_activity: Callable[[str], None] = lambda s: None) -> UpResult:
    """The loop, with a preemption policy: `fail` (exit 6) or `recreate` (delete the node,
    create it again, re-sync, re-bootstrap, relaunch with TPUCTL_RESTART_COUNT set).
    `on_state`: the node's and the run's states worth a line; `on_activity`: the step under
    way (a spinner's text, no line of its own)."""
    if on_preempt not in ("fail", "recreate"):
        raise UsageError(f"invalid --on-preempt {on_preempt!r}", hint="use fail or recreate")
    if max_recreates < 0:
        raise UsageError(f"invalid --max-recreates {max_recreates}", hint="use 0 or more")
    result = UpResult(node=p.name)
    logs = LocalLogs(log_dir or tpuctl_home() / "logs", p.name)

    def tee(i: int, line: str) -> None:
        logs.write(i, line)
        on_line(i, line)

    attempt = 0
    try:
        while True:
            try:
                _attempt(ports, p, result, attempt, replace=replace, follow=follow,
                         on_step=on_step, on_line=tee, on_state=on_state,
                         on_bootstrap=on_bootstrap, run_id=run_id, logs=logs,
                         ready_timeout=ready_timeout, on_activity=on_activity)
                return result
            except PreemptedError as e:
                if on_preempt != "recreate" or attempt >= max_recreates:
                    raise
                t = time.monotonic()
                _delete_quietly(ports, p.name)
                attempt += 1
                s = Step("preempted", "recreate",
                         f"{e.message}; recreating ({attempt}/{max_recreates})",
                         time.monotonic() - t)
                result.steps.append(s)
                on_step(s)
    finally:
        logs.close()


def _delete_quietly(ports: Ports, name: str) -> None:
    try:
        ports.cloud.wait_operation(start_delete(ports, ports.cloud.get_node(name)),
                                   timeout=900)
    except NotFoundError:
        pass


def _attempt(ports: Ports, p: Prepared, result: UpResult, attempt: int, *, replace: bool,
             follow: bool, on_step: Callable[[Step], None], on_line: runs_op.OnLine,
             on_state: Callable[[str], None],
             on_bootstrap: Callable[[bootstrap_op.WorkerBootstrap], None] | None,
             run_id: str | None, logs: LocalLogs, ready_timeout: float | None = None,
             on_activity: Callable[[str], None] = lambda s: None) -> None:
    r = p.recipe

    def step(name: str, outcome: str, detail: str, t0: float) -> None:
        s = Step(name, outcome, detail, time.monotonic() - t0)
        result.steps.append(s)
        on_step(s)

    t0 = time.monotonic()
    created = create_in_zone(ports, CreateRequest(name=p.name, accelerator_type=r.accelerator,
                                          runtime=r.runtime, spot=r.spot,
                                          timeout=r.timeouts.create), progress=on_state)
    sl = created.slice
    step("create", "done" if created.created else "reused",
         f"{sl.name} {sl.accelerator_type} {sl.state}, {len(sl.workers)} workers", t0)
    env = dict(r.env)
    rid = run_id
    if attempt:
        env["TPUCTL_RESTART_COUNT"] = str(attempt)
        rid = f"{run_id}-r{attempt}" if run_id else None

    async def rest() -> None:
        session = open_session(ports, p.name)
        try:
            t = time.monotonic()
            on_activity("syncing")
            synced = await sync_op.sync(session, p.repo, r.sync.via)
            untracked = (f"; not synced (untracked): {', '.join(synced.untracked[:3])}"
                         + (" ..." if len(synced.untracked) > 3 else "")
                         if synced.untracked else "")
            step("sync", "skipped" if synced.noop else "done",
                 f"{synced.repo}@{synced.sha[:12]}" + (" already on every worker"
                                                        if synced.noop else
                                                        f" on {len(synced.changed)} workers")
                 + untracked, t)
            if p.secrets is not None:
                t = time.monotonic()
                on_activity("pushing secrets")
                pushed = await secrets_op.push(session, p.secrets)
                step("secrets", "done", f"{len(pushed.keys)} keys to {pushed.workers} workers", t)
            t = time.monotonic()
            on_activity("bootstrapping")
            spec = venv_spec(p, sl.runtime_version)
            boot = await bootstrap_op.bootstrap(session, spec, timeout=r.timeouts.bootstrap,
                                                on_update=on_bootstrap)
            step("bootstrap", "cached" if boot.cached else "done",
                 f"venv {boot.hash}" + (" already built" if boot.cached else ""), t)
            t = time.monotonic()
            on_activity("launching")
            per_rank = None
            launch_rid = rid
            coord_port = None
            if r.serve is not None:
                from tpuctl.ops.serve import dist_port, rank_commands

                launch_rid = rid or launch_op.new_run_id(p.name)
                # one port for --dist-init-addr and JAX's coordinator env (its bind address)
                coord_port = dist_port(launch_op.coordinator_port(launch_rid), r.serve.port)
                per_rank = rank_commands(r.serve, p.serve_plan, session.slice, coord_port)
            launched = await launch_op.launch(session, launch_op.LaunchSpec(
                command=r.command_line(), env=env, workdir=workdir(p), venv_hash=spec.hash,
                commit=p.repo.sha, replace=replace, run_id=launch_rid,
                timeout=r.timeouts.run,
                per_worker_command=per_rank, coordinator_port=coord_port,
                serve_port=r.serve.port if r.serve is not None else None))
            result.run_id = logs.run_id = launched.run_id
            step("launch", "done", f"run {launched.run_id} on {launched.workers} workers", t)
            pattern = r.effective_ready_pattern
            if pattern is not None:
                from tpuctl.ops.ready import ReadySpec, wait_ready

                t = time.monotonic()
                serve = r.serve
                ready = await wait_ready(session, launched.run_id, ReadySpec(
                    pattern=pattern, port=serve.port if serve else None,
                    health_path=serve.health_path if serve else "/health_generate",
                    peer_pattern=serve.peer_pattern if serve else None),
                    timeout=ready_timeout or r.timeouts.ready or 900.0, on_state=on_state)
                result.url = ready.url
                step("ready", "done", f"{ready.url or 'ready line seen'}", t)
                if r.serve is not None:
                    return  # a server keeps running: `status`, `generate`, `down`
            if follow:
                t = time.monotonic()
                on_activity(f"running {launched.run_id}")
                tailed = await runs_op.tail(session, launched.run_id, lines=None, follow=True,
                                            on_line=on_line)
                result.exit_code = tailed.exit_code
                failed = tailed.first_failed
                detail = (f"exit {tailed.exit_code}" +
                          (f", first failure on w{failed}" if failed is not None else ""))
                step("run", "done" if tailed.exit_code == 0 else "failed", detail, t)
        except PreemptedError:
            raise
        except TpuctlError as e:
            # a worker lost mid-step may be a preempted node: say so (exit 6), not "failed"
            await asyncio.to_thread(raise_if_gone, ports.cloud, p.name, context=f"({e.message})",
                                    hint="`tpuctl up --on-preempt recreate` retries "
                                    "automatically")
            raise
        finally:
            await session.close()

    asyncio.run(rest())
