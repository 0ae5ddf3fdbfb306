"""The CLI builds only the command a command line names; what users see must not change."""

from __future__ import annotations

import pytest
import typer
import typer.main

from tpuctl.cli import main


def _help(app: typer.Typer, path: list[str]) -> str:
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("tpuctl", list(path), resilient_parsing=True)
    for name in path:
        sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
        assert sub is not None, name
        cmd = sub
        ctx = cmd.make_context(name, [], parent=ctx, resilient_parsing=True)
    return cmd.get_help(ctx)


def test_root_help_lists_every_command_exactly_as_the_full_app() -> None:
    lazy = main._app_for(["--help"])
    assert lazy is not main.app
    assert _help(lazy, []) == _help(main.app, [])


NAMES = [c.name for c in main.app.registered_commands] + \
    [g.name for g in main.app.registered_groups]


@pytest.mark.parametrize("name", NAMES)
def test_a_named_command_is_built_alone_and_helps_the_same(name: str) -> None:
    lazy = main._app_for([name, "--help"])
    built = typer.main.get_command(lazy)
    assert sorted(built.commands) == [name]  # type: ignore[attr-defined]
    assert _help(lazy, [name]) == _help(main.app, [name])


def test_unknown_command_still_gets_click_s_error_with_suggestions(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["exce", "x"]) == 2
    err = capsys.readouterr().err
    assert "No such command 'exce'" in err and "exec" in err


def test_version_works_with_the_listing_only_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tpuctl ")


def test_shell_completion_sees_the_whole_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TPUCTL_COMPLETE", "complete_bash")
    assert main._app_for(["ex"]) is main.app


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("tpuctl ex", "1", "exec"),
    ("tpuctl exec --w", "2", "--worker"),
    ("tpuctl emulator st", "2", "start"),
])
def test_bash_completion_through_the_real_entry_point(words: str, cword: str,
                                                      expected: str) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, _TPUCTL_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=cword)
    p = subprocess.run([sys.executable, "-c", "from tpuctl.cli.main import main; main()"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert expected in p.stdout.split(), (p.stdout, p.stderr)
