"""Hostile input through the whole path to a worker: byte-exact, never executed.

Values travel as data (`export K='v'` lines over SSH stdin, argv quoted once by shlex) and
come back from the job as JSON, so any quoting bug shows as a mismatch or a marker file.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Cli

pytestmark = pytest.mark.e2e

NODE = "hostile-v6e8"
MARKER_DIR = Path("/tmp") / f"tpuctl-hostile-{os.getpid()}"

# text that has broken shells in the field, plus whatever hypothesis finds
NASTY = st.sampled_from([
    "'", '"', "`id`", "$(touch MARK)", "${HOME}", "$HOME", ";", "&&", "|", "\\", "\n", "\t",
    " ", "--", "-e", "%s", "%", "!", "*", "?", "~", "#", "ünïcödé", "✓", "\x7f", "{a,b}",
    "<<EOF", ">", "<", "&",
])
VALUES = st.lists(st.one_of(NASTY, st.text(min_size=0, max_size=8).filter(
    lambda s: "\x00" not in s)), min_size=0, max_size=6).map("".join).map(
    lambda s: s.replace("MARK", str(MARKER_DIR / "pwned")))


@pytest.fixture(scope="module")
def node(cli: Cli) -> str:
    r = cli("create", NODE, "--type", "v6e-8")
    assert r.returncode == 0, r.stderr
    MARKER_DIR.mkdir(exist_ok=True)
    yield NODE
    cli("delete", NODE, "--yes")


@pytest.fixture(scope="module")
def ports(cli: Cli):
    os.environ["HOME"] = str(cli.home)  # the CLI's key and known_hosts
    from tpuctl.wiring import ports

    return ports(cli.endpoint)


def _roundtrip(ports, env: dict[str, str], argv: list[str], secret: str) -> dict:
    from tpuctl.ops import launch, runs, secrets
    from tpuctl.ops.session import open_session

    code = ("import json,os,sys; print(json.dumps({'argv': sys.argv[1:], 'env': {k: os.environ"
            f".get(k) for k in {sorted(env)!r}}}, 'secret': os.environ.get('HOSTILE_SECRET')}}))")
    run_id = f"h-{uuid.uuid4().hex[:10]}"

    async def go() -> dict:
        session = open_session(ports, NODE)
        try:
            await secrets.push(session, {"HOSTILE_SECRET": secret})
            await launch.launch(session, launch.LaunchSpec(
                command=shlex.join(["python3", "-c", code, *argv]), env=env, workdir=".",
                run_id=run_id))
            lines: list[str] = []
            result = await runs.tail(session, run_id, lines=None, follow=True,
                                     on_line=lambda i, ln: lines.append(ln))
            assert result.exit_code == 0, lines
            return json.loads(lines[-1])
        finally:
            await session.close()

    return asyncio.run(go())


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=VALUES, argv=st.lists(VALUES, max_size=4), secret=VALUES)
def test_env_argv_and_secrets_arrive_byte_exact(node, ports, value, argv, secret):
    # .env round trip: what python-dotenv would read back is what the job must see
    env = {"HOSTILE_VALUE": value}
    got = _roundtrip(ports, env, argv, secret)
    assert got["env"] == env
    assert got["argv"] == argv
    assert got["secret"] == secret
    assert not (MARKER_DIR / "pwned").exists()


@given(name=st.text(max_size=70))
@settings(max_examples=60)
def test_bad_names_and_run_ids_are_rejected_before_any_use(name):
    import re

    from tpuctl.errors import UsageError
    from tpuctl.naming import validate_node_name
    from tpuctl.ops.launch import validate_run_id

    if not re.match(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", name):
        with pytest.raises(UsageError):
            validate_node_name(name)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", name) or "\n" in name:
        with pytest.raises(UsageError):
            validate_run_id(name)


@pytest.mark.parametrize("args,needle", [
    (["launch", NODE, "--run-id", "../escape", "--", "true"], "invalid run id"),
    (["launch", NODE, "--run-id", "a;b", "--", "true"], "invalid run id"),
    (["launch", NODE, "--env", "BAD-KEY=1", "--", "true"], "invalid variable name"),
    (["launch", NODE, "--env", "TPUCTL_RUN_ID=x", "--", "true"], "set by tpuctl"),
    (["exec", "$(id)", "--", "true"], "invalid node name"),
    (["create", "-rf", "--type", "v6e-8"], ""),
    (["tail", NODE, "--worker", "0;1"], "invalid worker selection"),
    (["tail", NODE, "../x"], "invalid run id"),
    (["status", NODE, "a/b"], "invalid run id"),
    (["stop", NODE, ".."], "invalid run id"),
    (["logs", "fetch", NODE, "../../x"], "invalid run id"),
])
def test_hostile_cli_arguments_exit_2(cli, args, needle):
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
