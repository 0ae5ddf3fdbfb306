"""The fast path's command line (tpuctl/cli/fast/args.py) reads every command line it accepts
exactly as the full CLI (click) does, and leaves everything else to it; the fast path
imports none of typer, rich, pydantic, yaml or asyncio."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.exceptions import TyperException

from tpuctl.cli import main
from tpuctl.cli.fast import commands
from tpuctl.cli.fast.args import OPTIONS, Args, parse
from tpuctl.errors import TpuctlError

# click's parameter name for each of Args' fields (where they differ)
_PARAM = {"argv": "command", "json": "json_"}


def _click_params(argv: list[str]) -> dict[str, object] | None:
    """What the full CLI's parser makes of `argv`, or None when it refuses it."""
    root = typer.main.get_command(main.app)
    ctx = root.make_context("tpuctl", [argv[0]], resilient_parsing=True)
    cmd = root.get_command(ctx, argv[0])  # type: ignore[attr-defined]
    assert cmd is not None
    try:
        sub = cmd.make_context(argv[0], list(argv[1:]), parent=ctx)
    except (TyperException, TpuctlError):  # a parse error, or a callback's (a run id's)
        return None
    return dict(sub.params)


def _same_as_click(argv: list[str], args: Args) -> None:
    params = _click_params(argv)
    if params is None:  # then the fast path's own checks must leave it to the full CLI
        assert not commands._valid(args), f"the fast path takes what click refuses: {argv}"
        return
    for field in ("name", "run", "argv", "worker", "timeout", "json", "lines", "grace",
                  "api_endpoint", "project", "zone"):
        key = _PARAM.get(field, field)
        if key not in params:
            continue
        want = params[key]
        got = getattr(args, field)
        if field == "argv":
            want = tuple(want or ())
        assert got == want, (argv, field, got, want)


@pytest.mark.parametrize("argv", [
    ["exec", "n1", "--", "echo", "a b"],
    ["exec", "n1", "-w", "1", "--json", "--timeout", "2.5", "--", "true"],
    ["exec", "--worker=0,2", "n1", "--", "-x", "--", "y"],
    ["status", "n1"], ["status", "n1", "r1", "--json", "--zone", "z1", "--project", "p"],
    ["tail", "n1", "r1", "-n", "3", "-w", "1"], ["tail", "n1", "--lines=7"],
    ["stop", "n1", "--grace", "1"], ["stop", "n1", "r1", "--json"],
    ["ssh-config", "n1"], ["ssh-config", "n1", "--api-endpoint", "http://127.0.0.1:1"],
])
def test_common_forms_are_read_as_click_reads_them(argv: list[str]) -> None:
    args = parse(argv)
    assert args is not None, argv
    assert args.command == argv[0]
    _same_as_click(argv, args)


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["exec", "n1", "--help"], ["exec", "n1", "true"], ["exec", "n1", "--"],
    ["exec", "n1", "--timeout", "1e3", "--", "true"], ["exec", "n1", "-w=1", "--", "true"],
    ["exec", "n1", "-w", "0", "-w", "1", "--", "true"], ["status", "n1", "--watch"],
    ["tail", "n1", "-f"], ["tail", "n1", "--follow"], ["tail", "n1", "-n", "-3"],
    ["stop", "n1", "r1", "extra"], ["status", "n1", "--project", "--json"],
    ["status", "n\0"], ["list"], ["exec", "--", "true"], ["stop", "n1", "--json=1"],
])
def test_everything_else_is_left_to_the_full_cli(argv: list[str]) -> None:
    assert parse(argv) is None


_TOKENS = st.sampled_from([
    "n1", "r1", "--", "-", "--json", "--json=", "-w", "--worker", "--worker=1", "1", "0,1",
    "all", "--timeout", "--timeout=0.5", "2.", ".5", "1e3", "-1", "--grace", "--lines", "-n",
    "5", "--zone", "--project", "--api-endpoint", "--follow", "-f", "--watch", "--bogus",
    "-x", "a b", "--help", "-h", "=", "--lines=", "007",
])


@settings(max_examples=400, deadline=None)
@given(command=st.sampled_from(sorted(OPTIONS)), rest=st.lists(_TOKENS, max_size=8))
@example(command="status", rest=["n1", "-"])  # a run id click's callback refuses
def test_whatever_the_fast_path_accepts_click_reads_the_same(command: str,
                                                             rest: list[str]) -> None:
    argv = [command, *rest]
    args = parse(argv)
    if args is not None:
        _same_as_click(argv, args)


def test_the_fast_path_imports_no_framework() -> None:
    """Beyond what the interpreter itself loads (here, site imports pathlib for the editable
    install): none of typer, rich, pydantic, yaml, asyncio, the SSH or cloud libraries."""
    show = "import sys; print(' '.join(sorted(sys.modules)))"
    ours = "import tpuctl.cli.entry, tpuctl.cli.fast.commands, tpuctl.cli.fast.daemon; "

    def modules(code: str) -> set[str]:
        return set(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, check=True).stdout.split())

    added = modules(ours + show) - modules(show)
    assert "tpuctl.cli.fast.daemon" in added
    heavy = {"typer", "click", "rich", "pydantic", "yaml", "asyncio", "asyncssh", "google",
             "jax", "dataclasses", "pathlib", "hashlib"}
    assert {m.split(".")[0] for m in added} & heavy == set()


def test_the_entry_point_offers_the_fast_path_only_what_it_serves() -> None:
    from tpuctl.cli import entry

    assert set(entry._FAST) == set(OPTIONS)
    assert entry._maybe_fast(["exec", "n1", "--", "grep", "--help"])
    assert not entry._maybe_fast(["exec", "n1", "--help", "--", "true"])
    assert not entry._maybe_fast(["status", "-h"]) and not entry._maybe_fast(["--help"])
    assert not entry._maybe_fast(["list"]) and not entry._maybe_fast([])
