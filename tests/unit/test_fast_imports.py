"""The fast path's import set stays minimal (docs/performance.md#the-fast-path): every
module it loads costs every `tpuctl exec`/`status` a start-up it cannot win back; and the
stand-ins it uses instead of `re`, `shlex` and `json` give exactly what those give."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tpuctl import lazyre, shquote, wirejson
from tpuctl.cli.fast import commands
from tpuctl.cli.fast.args import _float, _int
from tpuctl.naming import _NODE_RE
from tpuctl.validate import RUN_ID_RE

ROOT = Path(__file__).resolve().parents[2]

# what a fast-path command must not load (beyond a bare interpreter): frameworks, the
# SSH and cloud libraries, and the stdlib modules that cost a millisecond or so apiece
DENIED = {"typer", "click", "rich", "pydantic", "yaml", "asyncio", "asyncssh", "google", "jax",
          "enum", "re", "json", "shlex", "ipaddress", "urllib", "pathlib", "typing",
          "dataclasses", "contextlib", "fnmatch", "functools", "collections", "hashlib",
          "socket", "selectors", "subprocess", "tempfile", "datetime", "logging", "inspect"}

HIT_PATH = """
import sys
base = set(sys.modules)
import tpuctl.cli.entry, tpuctl.cli.fast.commands, tpuctl.cli.fast.daemon, tpuctl.cli.fast.node
from tpuctl.cli.fast import commands, node
from tpuctl.cli.fast.args import parse
from tpuctl import wirejson
for argv in (["exec", "n1", "-w", "0,1", "--timeout", "1.5", "--json", "--", "true"],
             ["status", "n1", "r1"], ["tail", "n1", "r1", "-n", "5"],
             ["stop", "n1", "--grace", "2"], ["ssh-config", "n1"]):
    args = parse(argv)
    assert args is not None and commands._valid(args), argv
    node.find(args)  # no worker cache here: it reads the configuration and the key
wirejson.loads(wirejson.dumps({"o": [0, "stdout", "x"]}))
from tpuctl import remote
from tpuctl.workers import muxproto
muxproto.usable_socket_path(), remote.scripts_hash()
from tpuctl.ops.results import worker_run_id
worker_run_id(0, "r1")
from tpuctl.naming import ssh_username
ssh_username()
print(" ".join(sorted(set(sys.modules) - base)))
"""


def test_the_fast_path_loads_no_heavy_module(tmp_path: Path) -> None:
    """Run without `site` (which loads re, enum and pathlib for an editable install, and pip's
    console script imports re): only what the fast path itself imports is counted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPUCTL_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-S", "-c", HIT_PATH], capture_output=True,
                         text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert "tpuctl.cli.fast.daemon" in out and "tpuctl.wirejson" in out
    assert {m.split(".")[0] for m in out} & DENIED == set()


@given(st.text())
def test_quote_is_shlex_quote(s: str) -> None:
    assert shquote.quote(s) == shlex.quote(s)


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=8)))
def test_join_is_shlex_join(words: list[str]) -> None:
    assert shquote.join(words) == shlex.join(words)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(JSON)
def test_wirejson_writes_what_json_writes(obj: object) -> None:
    assert wirejson.dumps(obj) == json.dumps(obj, separators=(",", ":"))
    assert wirejson.dumps(obj, spaced=True) == json.dumps(obj)
    assert wirejson.loads(json.dumps(obj, indent=1) + "\n") == json.loads(json.dumps(obj))
    assert wirejson.loads(wirejson.dumps(obj).encode()) == obj


@given(st.text(alphabet=' \t\n{}[]",:0123456789.eE+-aeflnrstu\\', max_size=12))
def test_wirejson_reads_what_json_reads_and_refuses_the_rest(text: str) -> None:
    try:
        want: object = json.loads(text)
    except ValueError:
        want = ValueError
    try:
        got: object = wirejson.loads(text)
    except ValueError:
        got = ValueError
    assert got == want or (got != got and want != want)  # NaN


def test_wirejson_refuses_what_json_cannot_write() -> None:
    for bad in ({1, 2}, object(), b"x"):
        try:
            wirejson.dumps(bad)
        except TypeError:
            continue
        raise AssertionError(bad)


@given(st.sampled_from([r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", r"^(\d+)([smhd])$"]),
       st.text(alphabet="ab09-smhd\n", max_size=6))
def test_a_lazy_pattern_is_the_compiled_one(source: str, s: str) -> None:
    lazy, real = lazyre.compile(source), re.compile(source)
    assert bool(lazy.match(s)) == bool(real.match(s)) and lazy.pattern == source
    assert lazy.sub("x", s) == real.sub("x", s)


@given(st.text(alphabet="0123456789.-+e x\n", max_size=6))
def test_option_numbers_are_read_as_the_patterns_read_them(s: str) -> None:
    assert _int(s) == bool(re.fullmatch(r"[0-9]+", s))
    assert _float(s) == bool(re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", s))


@given(st.text(alphabet="abzAZ09-._\n", max_size=70))
def test_names_and_run_ids_are_checked_as_the_full_cli_checks_them(s: str) -> None:
    """Never laxer than the full CLI; stricter only for a trailing newline (which `$` lets
    through): the full CLI then decides, with its own message."""
    assert commands._node_name(s) == bool(_NODE_RE.match(s) and not s.endswith("\n"))
    assert commands._run_id(s) == bool(RUN_ID_RE.match(s) and not s.endswith("\n"))


@given(st.text(max_size=40))
def test_the_login_name_is_reduced_as_the_pattern_reduced_it(raw: str) -> None:
    from unittest import mock

    from tpuctl import naming

    with mock.patch.object(naming, "login_name", return_value=raw):
        got = naming.ssh_username()
    want = re.sub(r"[^a-z0-9_-]", "", raw.lower())[:32]
    assert got == (want if want and want[0].isalpha() else f"u{want}" if want else "tpuctl")


@given(st.text(alphabet="abzAZ09-._\n/ ", max_size=130))
@example("a" * 128)
@example("a" * 129)
@example("a" * 128 + "\n")
@example("\n")
def test_a_reported_run_id_is_checked_as_the_pattern_checks_it(s: str) -> None:
    from tpuctl import validate

    assert validate.is_run_id(s) == bool(RUN_ID_RE.match(s))


def test_the_installed_command_runs_tpuctl_before_importing_anything_else() -> None:
    # pip's generated entry-point wrapper imports `re` (~4 ms) before tpuctl's first line,
    # which alone took `exec` at 4 workers over 2x ControlMaster: the package ships its own
    # script (bin/tpuctl, pyproject's script-files), installed beside the interpreter
    script = Path(sys.executable).with_name("tpuctl")
    assert script.is_file(), "tpuctl is not installed in this environment (pip install -e .)"
    text = script.read_text()
    assert text.splitlines()[0].startswith("#!") and "python" in text.splitlines()[0]
    code = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and ln[0] != "#"]
    assert code[0] == "import sys" and code[1] == "from tpuctl.cli.entry import main", code
    assert not any(ln.startswith(("import re", "from re ")) for ln in code)
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("tpuctl "), r.stderr
