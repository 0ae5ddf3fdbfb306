"""Worker scripts refuse input that did not arrive whole (a cut connection, a short write):
the real remote/*.sh under bash on this machine, fed frames cut at every kind of place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tpuctl.ops.secrets import render_env
from tpuctl.remote import FRAME_ERROR, frame

REMOTE = Path(__file__).resolve().parents[2] / "tpuctl" / "remote"
OLD = {"HF_TOKEN": "hf_old", "WANDB_API_KEY": "w" * 40}
NEW = render_env({"HF_TOKEN": "hf_new", "WANDB_API_KEY": "x" * 40})


def _script(home: Path, name: str, *args: str, stdin: bytes = b""
            ) -> subprocess.CompletedProcess[bytes]:
    env = {"HOME": str(home), "PATH": os.environ["PATH"],
           "TPUCTL_LIBTPU_LOCKFILE": str(home / "lockfile"),
           "TPUCTL_TPU_DEVICES": str(home / "no-such-dev*")}
    return subprocess.run(["bash", str(REMOTE / f"{name}.sh"), *args], env=env, input=stdin,
                          capture_output=True, timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    r = _script(tmp_path, "secrets", "push", stdin=frame(render_env(OLD)))
    assert r.returncode == 0, r.stderr
    return tmp_path


CUTS = {
    "empty": lambda f: b"",
    "half a header": lambda f: f[:10],
    "header only": lambda f: f[:f.index(b"\n") + 1],
    "half the payload": lambda f: f[:len(f) - len(NEW) // 2],
    "last byte missing": lambda f: f[:-1],
    "a byte changed": lambda f: f[:-2] + bytes([f[-2] ^ 1]) + f[-1:],
    "a byte too many": lambda f: f + b"x",
    "no frame at all": lambda f: NEW,
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_truncated_secrets_push_fails_and_leaves_the_old_file(home: Path, cut: str) -> None:
    secrets = home / ".tpuctl" / "secrets.env"
    before = secrets.read_bytes()
    r = _script(home, "secrets", "push", stdin=CUTS[cut](frame(NEW)))
    assert r.returncode == FRAME_ERROR, r.stderr
    assert secrets.read_bytes() == before  # the old file, untouched
    assert sorted(p.name for p in secrets.parent.iterdir()) == ["secrets.env"]  # no temp left
    assert b"hf_" not in r.stderr + r.stdout  # the reason, never the data


def test_a_whole_frame_replaces_the_file_0600(home: Path) -> None:
    r = _script(home, "secrets", "push", stdin=frame(NEW))
    assert r.returncode == 0 and r.stdout == b"keys=2\n"
    secrets = home / ".tpuctl" / "secrets.env"
    assert secrets.read_bytes() == NEW and secrets.stat().st_mode & 0o777 == 0o600


def test_secrets_list_names_only_real_keys(home: Path) -> None:
    tricky = {"MULTI": "line one\nexport FAKE_KEY=1\nNOT_A_KEY=2", "QUOTED": "it's \"x\"",
              "PLAIN": "v"}
    assert _script(home, "secrets", "push", stdin=frame(render_env(tricky))).returncode == 0
    r = _script(home, "secrets", "list")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.decode().split()) == ["MULTI", "PLAIN", "QUOTED"]


def test_a_truncated_requirements_file_starts_no_bootstrap(tmp_path: Path) -> None:
    req = b"numpy==2.0.0\nrequests==2.32.0\n"
    r = _script(tmp_path, "bootstrap", "start", "h1", "-", "-", "-",
                stdin=frame(req)[:-5])
    assert r.returncode == FRAME_ERROR, r.stderr
    venvs = tmp_path / ".tpuctl" / "venvs"
    assert list(venvs.iterdir()) == []  # no requirements file, no pid: nothing started
    assert _script(tmp_path, "bootstrap", "status", "h1").stdout == b"state=none exit=-\n"


def test_a_truncated_launch_creates_no_run(tmp_path: Path) -> None:
    payload = frame(b"echo hi\0" + render_env({"TPUCTL_RUN_ID": "r1"}))
    args = ["start", "r1", "0", ".", "-", "-", "0", "0", "-"]
    r = _script(tmp_path, "launch", *args, stdin=payload[:-3])
    assert r.returncode == FRAME_ERROR, r.stderr
    runs = tmp_path / ".tpuctl" / "runs"
    assert list(runs.iterdir()) == []  # no run dir, no `latest`, no temp file
    r = _script(tmp_path, "launch", *args, stdin=payload)
    assert r.returncode == 0, r.stderr
    assert (runs / "r1" / "cmd").read_text() == "echo hi\n"
    assert (runs / "latest").read_text() == "r1\n"
    _script(tmp_path, "stop", "r1", "1")


# ------------------------------------------------------------------ NUL: a usage error, exit 2

@pytest.mark.parametrize("yaml_text,field", [
    ('command: [python, "a\\0rm -rf ~"]\n', "command.1"),
    ('command: "echo \\0"\n', "command"),
    ('command: [x]\nenv: {A: "1\\x00B"}\n', "env.A"),
])
def test_a_nul_in_any_recipe_field_is_exit_2(tmp_path: Path, yaml_text: str, field: str
                                             ) -> None:
    from tpuctl.errors import UsageError
    from tpuctl.recipes.schema import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("accelerator: v6e-8\n" + yaml_text)
    with pytest.raises(UsageError, match=f"field '{field}' holds a NUL byte"):
        load_recipe(recipe)


def test_a_nul_in_argv_or_an_env_value_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from tpuctl.cli.main import run
    from tpuctl.errors import UsageError

    assert run(["exec", "n", "--", "echo", "a\0b"]) == 2
    assert "argument 5 holds a NUL byte" in capsys.readouterr().err
    with pytest.raises(UsageError, match="'K': a value holds a NUL byte") as info:
        render_env({"K": "secret\0value"})
    assert "secret" not in info.value.message + str(info.value.hint)  # the key, not the value
