"""`up RECIPE`: create → sync → secrets → bootstrap → launch → tail, each step skipped when
already done; `down NAME`: stop + delete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tpuctl import gitrepo
from tpuctl.cloud.base import Cloud
from tpuctl.errors import UsageError
from tpuctl.ops import bootstrap as bootstrap_op
from tpuctl.ops import launch as launch_op
from tpuctl.ops import runs as runs_op
from tpuctl.ops import secrets as secrets_op
from tpuctl.ops import sync as sync_op
from tpuctl.ops.create import CreateRequest, create
from tpuctl.ops.session import SliceSession, open_session
from tpuctl.recipes.schema import Recipe


@dataclass(frozen=True)
class Step:
    name: str
    outcome: str  # done, skipped, cached, reused
    detail: str
    seconds: float


@dataclass
class UpResult:
    node: str
    run_id: str = "-"
    exit_code: int | None = None
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"node": self.node, "run_id": self.run_id, "exit_code": self.exit_code,
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
    return Prepared(recipe, name, repo, req, secrets)


def venv_spec(p: Prepared, runtime: str) -> bootstrap_op.BootstrapSpec:
    r = p.recipe
    return bootstrap_op.BootstrapSpec(
        requirements=p.requirements, python=r.python, torch=r.torch,
        project_dir=f"work/{p.repo.name}" if r.project_install else None, runtime=runtime)


def workdir(p: Prepared) -> str:
    base = f"work/{p.repo.name}"
    return f"{base}/{p.recipe.workdir.strip('/')}" if p.recipe.workdir else base


def up(cloud: Cloud, p: Prepared, *, replace: bool = False, follow: bool = True,
       on_step: Callable[[Step], None], on_line: runs_op.OnLine,
       on_state: Callable[[str], None] = lambda s: None,
       on_bootstrap: Callable[[bootstrap_op.WorkerBootstrap], None] | None = None,
       run_id: str | None = None) -> UpResult:
    r = p.recipe
    result = UpResult(node=p.name)

    def step(name: str, outcome: str, detail: str, t0: float) -> None:
        s = Step(name, outcome, detail, time.monotonic() - t0)
        result.steps.append(s)
        on_step(s)

    t0 = time.monotonic()
    created = create(cloud, CreateRequest(name=p.name, accelerator_type=r.accelerator,
                                          runtime=r.runtime, spot=r.spot,
                                          timeout=r.timeouts.create), progress=on_state)
    sl = created.slice
    step("create", "done" if created.created else "reused",
         f"{sl.name} {sl.accelerator_type} {sl.state}, {len(sl.workers)} workers", t0)

    async def rest() -> None:
        session = open_session(cloud, p.name)
        try:
            t = time.monotonic()
            synced = await sync_op.sync(session, p.repo, r.sync.via)
            step("sync", "skipped" if synced.noop else "done",
                 f"{synced.repo}@{synced.sha[:12]}" + (" already on every worker"
                                                        if synced.noop else
                                                        f" on {len(synced.changed)} workers"), t)
            if p.secrets is not None:
                t = time.monotonic()
                pushed = await secrets_op.push(session, p.secrets)
                step("secrets", "done", f"{len(pushed.keys)} keys to {pushed.workers} workers", t)
            t = time.monotonic()
            spec = venv_spec(p, sl.runtime_version)
            boot = await bootstrap_op.bootstrap(session, spec, timeout=r.timeouts.bootstrap,
                                                on_update=on_bootstrap)
            step("bootstrap", "cached" if boot.cached else "done",
                 f"venv {boot.hash}" + (" already built" if boot.cached else ""), t)
            t = time.monotonic()
            launched = await launch_op.launch(session, launch_op.LaunchSpec(
                command=r.command_line(), env=r.env, workdir=workdir(p), venv_hash=spec.hash,
                commit=p.repo.sha, replace=replace, run_id=run_id))
            result.run_id = launched.run_id
            step("launch", "done", f"run {launched.run_id} on {launched.workers} workers", t)
            if follow:
                t = time.monotonic()
                tailed = await _follow(session, launched.run_id, r.timeouts.run, on_line)
                result.exit_code = tailed.exit_code
                failed = tailed.first_failed
                detail = (f"exit {tailed.exit_code}" +
                          (f", first failure on w{failed}" if failed is not None else ""))
                step("run", "done", detail, t)
        finally:
            await session.close()

    asyncio.run(rest())
    return result


async def _follow(session: SliceSession, run_id: str, limit: float | None,
                  on_line: runs_op.OnLine) -> runs_op.TailResult:
    coro = runs_op.tail(session, run_id, lines=None, follow=True, on_line=on_line)
    if limit is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout=limit)
    except asyncio.TimeoutError:
        await launch_op.stop_run(session, run_id, grace=10)
        from tpuctl.errors import TimeoutExpired

        raise TimeoutExpired(f"run {run_id} exceeded timeouts.run={limit:.0f}s and was stopped",
                             hint="raise timeouts.run in the recipe") from None
