"""The `tpuctl` entry point: wires command modules and renders every error in one place.

Startup stays fast: nothing here imports google-cloud, asyncssh or jax; commands import
what they need inside their functions.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from typing import Any

import typer

from tpuctl import __version__
from tpuctl.cli import (
    config_cmd,
    doctor_cmd,
    emulator,
    loop,
    mux_cmd,
    nodes,
    observe,
    plan,
    remote,
    serving,
    spend,
)
from tpuctl.errors import ExitCode, TpuctlError

app = typer.Typer(
    name="tpuctl",
    help="Run JAX work on Cloud TPU VMs: create → sync → bootstrap → launch → tail, serve, "
    "and a local emulator of the whole thing. Start with `tpuctl up recipes/quickstart.yaml`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("create")(nodes.create)
app.command("list")(nodes.list_)
app.command("describe")(nodes.describe)
app.command("delete")(nodes.delete)
app.command("exec")(remote.exec_)
app.command("ssh")(remote.ssh)
app.command("ssh-config")(remote.ssh_config)
app.command("config")(config_cmd.config)
app.command("doctor")(doctor_cmd.doctor)
app.command("accelerators")(nodes.accelerators)
app.command("gc")(nodes.gc)
app.command("sync")(loop.sync)
app.add_typer(loop.secrets_app, name="secrets")
app.add_typer(loop.logs_app, name="logs")
app.command("bootstrap")(loop.bootstrap)
app.command("launch")(loop.launch)
app.command("tail")(observe.tail)
app.command("status")(observe.status)
app.command("stop")(observe.stop)
app.command("runs")(observe.runs)
app.command("top")(observe.top)
app.command("cost")(spend.cost)
app.command("up")(loop.up)
app.command("down")(loop.down)
app.command("serve")(serving.serve)
app.command("forward")(serving.forward)
app.command("generate")(serving.generate)
app.add_typer(plan.app, name="plan")
app.add_typer(emulator.app, name="emulator")
app.add_typer(mux_cmd.app, name="mux")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tpuctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """tpuctl: the whole TPU VM loop in one tool."""


def _listing_only(fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """A parameterless stand-in carrying `fn`'s docstring: enough for a command listing."""
    if fn is None:
        return None

    def stand_in() -> None:
        raise AssertionError("a listing-only command was invoked")  # never: see _app_for

    stand_in.__doc__ = fn.__doc__
    return stand_in


def _listed(t: typer.Typer) -> typer.Typer:
    """`t` with every command (and sub-group) replaced by its listing-only stand-in."""
    out = copy.copy(t)
    out.registered_commands = []
    for c in t.registered_commands:
        stub = copy.copy(c)
        stub.callback = _listing_only(c.callback)
        out.registered_commands.append(stub)
    out.registered_groups = []
    for g in t.registered_groups:
        group = copy.copy(g)
        if isinstance(g.typer_instance, typer.Typer):
            group.typer_instance = _listed(g.typer_instance)
        out.registered_groups.append(group)
    if t.registered_callback is not None:
        out.registered_callback = copy.copy(t.registered_callback)
        out.registered_callback.callback = _listing_only(t.registered_callback.callback)
    return out


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only what this invocation can reach built into click commands.

    typer turns every parameter of every command into a click object before parsing (about
    25 ms for tpuctl's 31 commands, a third of `tpuctl --help`). A command line naming a
    command or group gets an app holding just that one; anything else (`tpuctl`, `--help`,
    `--version`, an unknown name) can only print the root help or an error, so it gets every
    command as a parameterless stand-in with the same name and docstring: the same listing.
    Shell completion sees the whole app.
    """
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return app
    first = next((a for a in args if not a.startswith("-")), None)
    if first is not None:
        commands = [c for c in app.registered_commands if c.name == first]
        groups = [g for g in app.registered_groups if g.name == first]
        if commands or groups:
            one = copy.copy(app)
            one.registered_commands, one.registered_groups = commands, groups
            return one
    root = _listed(app)
    root.registered_callback = app.registered_callback  # --version stays real
    return root


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (tests call this; `main` exits with it)."""
    from typer.exceptions import TyperException

    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    bad = next((i for i, a in enumerate(args) if "\0" in a), None)
    if bad is not None:  # a C argv cannot hold one; whatever passed it on would cut it
        from tpuctl.cli.output import render_error
        from tpuctl.errors import UsageError

        render_error(UsageError(f"argument {bad + 1} holds a NUL byte",
                                hint="remove it; no argument can carry NUL"), as_json=as_json)
        return int(ExitCode.USAGE)
    try:
        rv = _app_for(args)(args=args, prog_name="tpuctl", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except TyperException as e:  # usage errors found by the parser: same one-line form
        from tpuctl.cli.output import render_error
        from tpuctl.errors import UsageError

        ctx = getattr(e, "ctx", None)
        cmd = getattr(ctx, "command_path", None) or "tpuctl"
        render_error(UsageError(e.format_message(), hint=f"see `{cmd} --help`"),
                     as_json=as_json)
        return int(ExitCode.USAGE)
    except TpuctlError as e:
        from tpuctl.cli.output import render_error

        render_error(e, as_json=as_json)
        return int(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return int(ExitCode.INTERRUPTED)


def main() -> None:
    sys.exit(run())
