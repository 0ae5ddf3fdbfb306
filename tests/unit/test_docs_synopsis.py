"""docs/commands.md's synopses name exactly the flags each command has, and every command
has one: a flag added, renamed or removed in code without the docs fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
# taken by every command that talks to a cloud, documented once at the top of the page
COMMON = {"--api-endpoint", "--project", "--zone", "--help"}
# taken by every command that reaches workers, documented once ("How workers are reached")
WAY_IN = {"--ssh-proxy-jump", "--ssh-proxy-command", "--tunnel-through-iap", "--internal-ip"}
REACHES_WORKERS = {("exec",), ("ssh",), ("ssh-config",), ("sync",), ("secrets", "push"),
                   ("secrets", "list"), ("bootstrap",), ("launch",), ("up",), ("down",),
                   ("logs", "fetch"), ("tail",), ("status",), ("stop",), ("runs",),
                   ("serve",), ("forward",), ("generate",), ("top",), ("doctor",)}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b")


def _synopses() -> dict[tuple[str, ...], set[str]]:
    """command path -> flags its synopsis names (the `### ` heading and, when the heading
    runs long, the backticked line below it)."""
    lines = DOC.read_text().splitlines()
    out: dict[tuple[str, ...], set[str]] = {}
    for i, line in enumerate(lines):
        if not line.startswith("### `tpuctl "):
            continue
        spans = re.findall(r"`tpuctl ([^`]*)`", line)
        below = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("`[") else ""
        for n, span in enumerate(spans):
            path = tuple(w for w in span.split()[:2] if re.fullmatch(r"[a-z][a-z-]*", w))
            out[path] = set(_FLAG.findall(span + (" " + below if n == 0 else "")))
    return out


def _commands() -> dict[tuple[str, ...], Any]:
    import typer.main

    from tpuctl.cli.main import app

    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, prefix: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            found[prefix] = cmd
            return
        for name, sub in subs.items():
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return found


def _options(cmd: Any) -> list[set[str]]:
    """Each option's names (`{"-n", "--lines"}`), the common ones left out."""
    return [set(p.opts) | set(p.secondary_opts) for p in cmd.params
            if getattr(p, "param_type_name", "") == "option"
            and not set(p.opts) & (COMMON | WAY_IN)]


def test_every_command_that_reaches_workers_takes_the_way_in_flags() -> None:
    commands = _commands()
    for path in REACHES_WORKERS:
        names = {o for p in commands[path].params for o in getattr(p, "opts", [])}
        assert WAY_IN <= names, f"`tpuctl {' '.join(path)}` lacks {sorted(WAY_IN - names)}"
    others = {path for path, cmd in commands.items() if path not in REACHES_WORKERS
              and {o for p in cmd.params for o in getattr(p, "opts", [])} & WAY_IN}
    assert others == set(), "documented as reaching workers? add them to REACHES_WORKERS"
    assert all(f"`{flag}" in DOC.read_text() for flag in WAY_IN)


DOCUMENTED_ELSEWHERE = {"emulator", "mux"}  # their own sections, not `### tpuctl ...`


def test_every_command_has_a_synopsis() -> None:
    synopses = _synopses()
    missing = [" ".join(path) for path in _commands()
               if path[0] not in DOCUMENTED_ELSEWHERE and path not in synopses]
    assert missing == []


@pytest.mark.parametrize("path", sorted(_synopses()), ids=" ".join)
def test_synopsis_names_the_real_flags(path: tuple[str, ...]) -> None:
    options = _options(_commands()[path])
    documented = _synopses()[path] - COMMON
    unknown = {f for f in documented if not any(f in names for names in options)}
    assert unknown == set(), f"documented but not a flag of `tpuctl {' '.join(path)}`"
    missing = [sorted(names) for names in options if not names & documented]
    assert missing == [], f"flags missing from the synopsis of `tpuctl {' '.join(path)}`"
