"""sync, secrets, bootstrap, launch, tail, status, stop, up, down: the loop on a slice."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tpuctl.cli import output
from tpuctl.cli.options import (
    EndpointOpt,
    JsonOpt,
    NameArg,
    ProjectOpt,
    ZoneOpt,
    checked_run_id,
    ports_for,
)
from tpuctl.cli.remote import worker_line_printer

logs_app = typer.Typer(help="Copy runs' logs home.", no_args_is_help=True)
secrets_app = typer.Typer(help="Push a .env to every worker (0600, via stdin), list key names.",
                          no_args_is_help=True)

RunArg = Annotated[str | None, typer.Argument(help="run id (default: the latest)",
                                              show_default=False, callback=checked_run_id)]
RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="recipe YAML",
                                                show_default=False)]


def _run(ports: Any, name: str, coro_fn: Any, *, shared: bool = False,  # noqa: ANN401
         any_owner: bool = False) -> Any:  # noqa: ANN401
    from tpuctl.ops.session import on_slice

    return on_slice(ports, name, coro_fn, shared=shared, any_owner=any_owner)


def sync(
    name: NameArg,
    ref: Annotated[str, typer.Option(help="branch, tag or commit to put on the workers")
                   ] = "HEAD",
    via: Annotated[str, typer.Option(help="origin (workers fetch from the remote) or bundle "
                                     "(stream it over SSH)")] = "bundle",
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty",
                                              help="sync the commit even with uncommitted "
                                              "changes (they are left out)")] = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Put every worker's ~/work/<repo> at one exact commit (git, never scp)."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import sync as op

    validate_node_name(name)
    state = op.plan(None, ref, via, allow_dirty)
    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: op.sync(s, state, via))
    if json_:
        output.print_json(result.to_dict())
        return
    if result.left_out:
        output.info(f"left out (uncommitted): {', '.join(result.left_out[:10])}")
    if result.untracked:
        output.info(f"not synced (untracked): {', '.join(result.untracked[:10])}")
    what = "already at" if result.noop else f"synced {len(result.changed)} worker(s) to"
    output.info(f"{what} {result.repo}@{result.sha[:12]} via {result.via}")
    output.out(result.sha)


@secrets_app.command("push")
def secrets_push(
    name: NameArg,
    file: Annotated[str, typer.Argument(help="a .env file, or - for stdin")] = ".env",
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Send KEY=VALUE secrets to ~/.tpuctl/secrets.env (0600) on every worker."""
    from tpuctl.errors import UsageError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import secrets as op

    validate_node_name(name)
    if file == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"secrets file {file!r} not found",
                             hint="pass a .env file path, or - to read stdin")
        text, source = path.read_text(), file
    values = op.parse_env(text, source)
    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: op.push(s, values, partial=True))
    if json_:
        output.print_json(result.to_dict())
    else:
        output.info(f"pushed {len(result.keys)} key(s) to {result.workers} worker(s): "
                    f"{', '.join(result.keys)}")
        output.unreachable(result.unreachable)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@secrets_app.command("list")
def secrets_list(
    name: NameArg, json_: JsonOpt = False, api_endpoint: EndpointOpt = None,
    project: ProjectOpt = None, zone: ZoneOpt = None,
) -> None:
    """Key names (never values) of the secrets on each worker."""
    from tpuctl.ops import secrets as op

    ports = ports_for(api_endpoint, project, zone)
    listing = _run(ports, name, op.list_keys)
    if json_:
        output.print_json(listing.to_dict())
    else:
        for i, k in sorted(listing.keys.items()):
            output.out(f"w{i}: {' '.join(k) if k else '(none)'}")
        output.unreachable(listing.unreachable)
    if listing.exit_code:
        raise typer.Exit(listing.exit_code)


def bootstrap(
    name: NameArg,
    python: Annotated[str | None, typer.Option(help="Python version for the venv, e.g. 3.11")
                      ] = None,
    requirements: Annotated[Path | None, typer.Option(help="requirements file to install",
                                                      show_default=False)] = None,
    install_project: Annotated[bool, typer.Option(
        "--install-project", help="pip install -e the synced repository itself (its "
        "pyproject.toml)")] = False,
    torch: Annotated[str | None, typer.Option(help="cpu: the CPU-only torch index")] = None,
    recipe: RecipeOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds for the whole bootstrap")] = 1800.0,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Build the venv on every worker (detached, retried, cached by a marker)."""
    from tpuctl.errors import UsageError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import bootstrap as op

    validate_node_name(name)
    if torch not in (None, "cpu"):
        raise UsageError(f"invalid --torch {torch!r}", hint="only --torch cpu is supported")
    if python is not None:
        op.validate_python(python)
    if recipe is not None:
        from tpuctl.ops.up import prepare, venv_spec
        from tpuctl.recipes.schema import load_recipe

        r, _ = load_recipe(recipe)
        prepared = prepare(r, name, recipe)
        make_spec = lambda rt: venv_spec(prepared, rt)  # noqa: E731
        timeout = r.timeouts.bootstrap
    else:
        req = b""
        if requirements is not None:
            if not requirements.is_file():
                raise UsageError(f"requirements file {str(requirements)!r} not found",
                                 hint="pass an existing file")
            req = requirements.read_bytes()
        proj = None
        if install_project:
            from tpuctl import gitrepo

            proj = f"work/{gitrepo.inspect().name}"
        make_spec = lambda rt: op.BootstrapSpec(  # noqa: E731
            requirements=req, python=python, torch=torch, project_dir=proj, runtime=rt)
    ports = ports_for(api_endpoint, project, zone)
    view = BootstrapView(json_)

    async def go(session: Any) -> Any:  # noqa: ANN401
        return await op.bootstrap(session, make_spec(session.slice.runtime_version),
                                  timeout=timeout, on_update=view.update)

    result = _run(ports, name, go)
    if json_:
        output.print_json(result.to_dict())
    else:
        output.info(f"bootstrap {result.hash}: " + ("cached on every worker, nothing to do"
                                                    if result.cached else
                                                    f"done in {result.seconds:.1f}s"))


class BootstrapView:
    """Per-worker progress: one line per change (piped) or per worker state (terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.seen: dict[int, tuple[str, str]] = {}

    def update(self, w: Any) -> None:  # noqa: ANN401
        key = (w.state, w.last_line)
        if self.quiet or self.seen.get(w.index) == key:
            return
        self.seen[w.index] = key
        extra = f" (attempt {w.attempts})" if w.attempts > 1 else ""
        line = f" {w.last_line}" if w.last_line else ""
        output.info(f"[w{w.index}] bootstrap {w.state}{extra}{line}"[:200])


def launch(
    name: NameArg,
    command: Annotated[list[str] | None, typer.Argument(help="command after -- (or --recipe)",
                                                        show_default=False)] = None,
    recipe: RecipeOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="name the run")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="stop a live run first")] = False,
    force: Annotated[bool, typer.Option("--force", help="kill stale holders of the TPU "
                                        "devices and clear the libtpu lockfile")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="seconds the job may run; enforced on every worker (then exit 5 in tail)")
                       ] = None,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE for the job (repeatable; "
                                           "not for secrets or hyperparameters)")
                   ] = [],  # noqa: B006
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Start the job on every worker under setsid nohup and return at once with its run id."""
    import shlex

    from tpuctl.errors import UsageError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import launch as op

    validate_node_name(name)
    if run_id:
        op.validate_run_id(run_id)
    if (recipe is None) == (not command):
        raise UsageError("give either --recipe FILE or a command after --",
                         hint="e.g. tpuctl launch NAME -- python train.py cfg.yaml")
    if recipe is not None:
        from tpuctl.ops.up import bootstrap_op, prepare, venv_spec, workdir
        from tpuctl.recipes.schema import load_recipe

        r, _ = load_recipe(recipe)
        prepared = prepare(r, name, recipe)

        def make(session: Any) -> op.LaunchSpec:  # noqa: ANN401
            spec: bootstrap_op.BootstrapSpec = venv_spec(prepared, session.slice.runtime_version)
            return op.LaunchSpec(command=r.command_line(), env=r.env, workdir=workdir(prepared),
                                 venv_hash=spec.hash, commit=prepared.repo.sha,
                                 replace=replace, force=force, run_id=run_id,
                                 timeout=timeout or r.timeouts.run)
    else:
        extra = _parse_env_flags(env)
        wd = "."
        try:
            from tpuctl import gitrepo

            wd = f"work/{gitrepo.inspect().name}"
        except UsageError:
            pass
        line = shlex.join(command or [])

        def make(session: Any) -> op.LaunchSpec:  # noqa: ANN401
            return op.LaunchSpec(command=line, env=extra, workdir=wd, venv_hash="current",
                                 replace=replace, force=force, run_id=run_id,
                                 timeout=timeout)

    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: op.launch(s, make(s)))
    if json_:
        output.print_json(result.to_dict())
        return
    output.info(f"launched on {result.workers} worker(s); follow with "
                f"`tpuctl tail {name} {result.run_id} --follow`")
    output.out(result.run_id)


def _parse_env_flags(items: list[str]) -> dict[str, str]:
    from tpuctl.errors import UsageError
    from tpuctl.recipes.schema import Recipe

    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"invalid --env {k!r}: expected KEY=VALUE", hint="e.g. --env A=1")
        out[k] = v
    try:
        Recipe._env_keys(out)  # same rules as recipes
    except ValueError as e:
        raise UsageError(f"invalid --env: {e}", hint="KEY=VALUE with KEY made of letters, "
                         "digits and _; TPUCTL_* and JAX_* distribution variables are "
                         "set by tpuctl") from None
    return out


def render_step(s: Any) -> None:  # noqa: ANN401 - an ops.up.Step
    """One `✓ step outcome detail (seconds)` line per step of `up` and `serve` (`✗` for a
    run that failed)."""
    mark = "✗" if s.outcome == "failed" else "✓"
    output.info(f"{mark} {s.name:<9} {s.outcome:<7} {s.detail} ({s.seconds:.1f}s)")


def up(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/quickstart.yaml",
                                           show_default=False)],
    name: Annotated[str | None, typer.Option("--name", help="node name (default: the "
                                             "recipe's name or file stem)")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="stop a live run first")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="return after launch; do not tail")
                      ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="name the run")] = None,
    on_preempt: Annotated[str, typer.Option("--on-preempt", help="fail (exit 6) or recreate "
                                            "the node and run again")] = "fail",
    max_recreates: Annotated[int, typer.Option("--max-recreates", help="budget for "
                                               "--on-preempt recreate")] = 3,
    ready_timeout: Annotated[float | None, typer.Option(
        "--ready-timeout", help="seconds until ready (servers; default timeouts.ready)")
                             ] = None,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """create → sync → secrets → bootstrap → launch → tail, skipping what is already done."""
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import up as op
    from tpuctl.recipes.schema import load_recipe

    r, default_name = load_recipe(recipe)
    node = validate_node_name(name or default_name)
    if run_id:
        from tpuctl.ops.launch import validate_run_id

        validate_run_id(run_id)
    prepared = op.prepare(r, node, recipe)
    ports = ports_for(api_endpoint, project, zone or r.zone)
    printer = worker_line_printer(json_)
    view = BootstrapView(json_)

    def on_step(s: Any) -> None:  # noqa: ANN401
        if not json_:
            render_step(s)

    with output.progress(f"{node}") as p:
        result = op.up(ports, prepared, replace=replace, follow=not detach, on_step=on_step,
                       on_line=lambda i, ln: printer(i, "stdout", ln), on_state=p.update,
                       on_bootstrap=view.update, run_id=run_id, on_preempt=on_preempt,
                       max_recreates=max_recreates, ready_timeout=ready_timeout,
                       on_activity=p.activity)
    if json_:
        output.print_json(result.to_dict())
    elif result.url is not None:
        output.info(f"serving at {result.url} (on the slice); try `tpuctl generate {node} "
                    f"'Hello'` or `tpuctl forward {node}`")
        output.out(result.run_id)
    elif result.exit_code is not None:
        total = sum(s.seconds for s in result.steps)
        verdict = "succeeded" if result.exit_code == 0 else f"failed (exit {result.exit_code})"
        output.info(f"run {result.run_id} {verdict}; total {total:.1f}s")
    else:
        output.out(result.run_id)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def down(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    any_owner: Annotated[bool, typer.Option(
        "--any-owner", help="also another user's managed node (never an unmanaged one)")
                         ] = False,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Stop the latest run (if any) and delete the node (yours, managed by tpuctl)."""
    from tpuctl.cli import nodes
    from tpuctl.errors import TpuctlError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops import launch as op
    from tpuctl.ops.nodes import check_deletable

    validate_node_name(name)
    if not yes and not sys.stdin.isatty():
        from tpuctl.errors import UsageError

        raise UsageError(f"refusing to take down {name!r} without --yes (stdin is not a "
                         "terminal)", hint=f"run `tpuctl down {name} --yes`")
    ports = ports_for(api_endpoint, project, zone)
    check_deletable(ports, name, any_owner=any_owner)  # before anything touches the node
    try:
        _run(ports, name, lambda s: op.stop_run(s, None, grace=10), any_owner=any_owner)
    except TpuctlError as e:
        if e.exit_code not in (3,) and "not READY" not in e.message:
            output.info(f"stop skipped: {e.message}")
    nodes.delete(name, yes=yes, wait=True, any_owner=any_owner, json_=json_,
                 api_endpoint=api_endpoint, project=project, zone=zone)


@logs_app.command("fetch")
def logs_fetch(
    name: NameArg, run: RunArg = None,
    dest: Annotated[Path | None, typer.Option(help="local directory (default "
                                              "~/.tpuctl/logs)", show_default=False)] = None,
    json_: JsonOpt = False, api_endpoint: EndpointOpt = None, project: ProjectOpt = None,
    zone: ZoneOpt = None,
) -> None:
    """Copy every worker's log of a run to DEST/<node>/<run>/worker<i>.log."""
    from tpuctl.ops import logs as op

    ports = ports_for(api_endpoint, project, zone)
    result = _run(ports, name, lambda s: op.fetch(s, run, dest or op.default_dest()))
    if json_:
        output.print_json(result.to_dict())
    else:
        output.info(f"{len(result.files)} log(s) in {result.directory}"
                    + (f"; not copied: {', '.join(f'w{i}' for i in result.missing)}"
                       if result.missing else ""))
        output.out(str(result.directory))
    if result.exit_code:
        raise typer.Exit(result.exit_code)
