"""A recipe turned into what the steps need, in one place: the commit to sync, the venv to
build (`BootstrapSpec`), the job to start (`LaunchSpec`). `up`, `serve`, and `bootstrap` or
`launch` with `--recipe` all read a recipe through here, so they agree on every field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tpuctl import gitrepo
from tpuctl.capacity import Capacity
from tpuctl.errors import UsageError
from tpuctl.model import Slice
from tpuctl.ops import sync as sync_op
from tpuctl.ops.bootstrap import BootstrapSpec
from tpuctl.ops.launch import LaunchSpec, coordinator_port, new_run_id
from tpuctl.ops.secrets import parse_env
from tpuctl.recipes.node import Mount, node_options
from tpuctl.recipes.planner import ServePlan
from tpuctl.recipes.schema import Recipe, load_recipe
from tpuctl.vmoptions import VmOptions


@dataclass(frozen=True)
class Prepared:
    """Everything checked locally before any API call or worker is touched."""

    recipe: Recipe
    name: str
    repo: gitrepo.RepoState
    requirements: bytes
    secrets: dict[str, str] | None
    serve_plan: ServePlan | None = None  # serving recipes: the planner's layout
    node: NodeOptions | None = None  # the recipe's `node:` block, as `create` takes it


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
        secrets = parse_env(spath.read_text(), str(recipe.secrets))
    plan = None
    if recipe.serve is not None:
        from tpuctl.ops.serve import plan_for

        plan = plan_for(recipe, repo.root)
    capacity, vm, mounts = node_options(recipe.node, repo.root, spot=recipe.spot)
    return Prepared(recipe, name, repo, req, secrets, plan, NodeOptions(capacity, vm, mounts))


@dataclass(frozen=True)
class NodeOptions:
    capacity: Capacity
    vm: VmOptions
    mounts: tuple[Mount, ...]


def prepare_file(path: Path, name: str | None = None) -> Prepared:
    """Load and prepare a recipe file; the node is `name`, else the recipe's own."""
    from tpuctl.naming import validate_node_name

    recipe, default_name = load_recipe(path)
    return prepare(recipe, validate_node_name(name or default_name), path)


def venv_spec(p: Prepared, runtime: str) -> BootstrapSpec:
    r = p.recipe
    return BootstrapSpec(
        requirements=p.requirements, python=r.python, torch=r.torch,
        project_dir=f"work/{p.repo.name}" if r.project_install else None, runtime=runtime)


def workdir(p: Prepared) -> str:
    base = f"work/{p.repo.name}"
    return f"{base}/{p.recipe.workdir.strip('/')}" if p.recipe.workdir else base


def launch_spec(p: Prepared, sl: Slice, *, run_id: str | None = None, replace_run: bool = False,
                force: bool = False, timeout: float | None = None,
                env: Mapping[str, str] | None = None) -> LaunchSpec:
    """The recipe's job on this slice: its command (a serving recipe: one per rank, laid out
    by the planner), env, checkout, venv and timeouts."""
    r = p.recipe
    spec = LaunchSpec(command=r.command_line(), env=dict(r.env if env is None else env),
                      workdir=workdir(p), venv_hash=venv_spec(p, sl.runtime_version).hash,
                      commit=p.repo.sha, replace=replace_run, force=force, run_id=run_id,
                      timeout=timeout or r.timeouts.run)
    if r.serve is None or p.serve_plan is None:
        return spec
    from tpuctl.ops.serve import dist_port, rank_commands

    rid = run_id or new_run_id(p.name)
    # one port for --dist-init-addr and JAX's coordinator env (its bind address)
    port = dist_port(coordinator_port(rid), r.serve.port)
    return replace(spec, run_id=rid, serve_port=r.serve.port, coordinator_port=port,
                   per_worker_command=rank_commands(r.serve, p.serve_plan, sl, port))
