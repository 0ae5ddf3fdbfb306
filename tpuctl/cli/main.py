"""The `tpuctl` entry point: wires command modules and renders every error in one place.

Startup stays fast: nothing here imports google-cloud, asyncssh or jax; commands import
what they need inside their functions.
"""

from __future__ import annotations

import sys

import typer

from tpuctl import __version__
from tpuctl.cli import config_cmd, emulator, loop, nodes, plan, remote, serving
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
app.command("accelerators")(nodes.accelerators)
app.command("gc")(nodes.gc)
app.command("sync")(loop.sync)
app.add_typer(loop.secrets_app, name="secrets")
app.add_typer(loop.logs_app, name="logs")
app.command("bootstrap")(loop.bootstrap)
app.command("launch")(loop.launch)
app.command("tail")(loop.tail)
app.command("status")(loop.status)
app.command("stop")(loop.stop)
app.command("up")(loop.up)
app.command("down")(loop.down)
app.command("serve")(serving.serve)
app.command("forward")(serving.forward)
app.command("generate")(serving.generate)
app.add_typer(plan.app, name="plan")
app.add_typer(emulator.app, name="emulator")


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


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (tests call this; `main` exits with it)."""
    from typer.exceptions import TyperException

    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    try:
        rv = app(args=args, prog_name="tpuctl", standalone_mode=False)
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
