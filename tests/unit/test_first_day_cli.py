"""What a new user trips on first, through the real entry point (`tpuctl.cli.main.run`).

Each of these fails (or answers) locally: the endpoint points at a closed port, so any API
call would surface as a cloud error (exit 4) instead of the usage error (exit 2) expected.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from tpuctl.cli.main import run

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TPUCTL_PROJECT", "TPUCTL_ZONE", "CLOUDSDK_CORE_PROJECT",
                "CLOUDSDK_COMPUTE_ZONE", "TPUCTL_PERSIST_CONNECTIONS", "CI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", DEAD)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("args", [
    ["exec", "n", "--worker", "", "--", "true"],
    ["exec", "n", "--worker", "  ", "--", "true"],
    ["tail", "n", "--worker", ""],
])
def test_an_empty_worker_selection_is_a_usage_error(args, capsys):
    assert run(args) == 2
    assert "empty worker selection" in capsys.readouterr().err


def test_a_huge_worker_range_is_refused_without_building_it(capsys):
    t0 = time.monotonic()
    assert run(["exec", "n", "--worker", "0-99999999999", "--", "true"]) == 2
    assert time.monotonic() - t0 < 5
    assert "no TPU slice has that many workers" in capsys.readouterr().err


def test_python_version_is_checked_before_any_worker(capsys):
    assert run(["bootstrap", "n", "--python", "abc"]) == 2
    err = capsys.readouterr().err
    assert "invalid --python 'abc'" in err and "3.11" in err


def test_bootstrap_project_option_cannot_swallow_json(capsys):
    assert run(["bootstrap", "n", "--project", "--json"]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)  # --json was still seen: the error is JSON too
    assert doc["exit_code"] == 2 and "'--json' instead of a value" in doc["message"]
    assert "--project" in err


def test_install_project_is_the_renamed_flag(capsys):
    assert run(["bootstrap", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-project" in out and "pip install -e" in out


@pytest.mark.parametrize("body,expected", [
    ("python: 3.10\n", 'quote it: python: "3.10"'),
    ("env: {N: 5}\n", 'quote it: N: "5"'),
    ("env:\n  DEBUG: yes\n", 'quote it: DEBUG: "yes"'),
])
def test_a_recipe_number_where_text_is_expected_says_quote_it(tmp_path, capsys, body, expected):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("accelerator: v6e-8\ncommand: 'true'\n" + body)
    assert run(["up", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "YAML reads" in err


def test_a_secrets_line_that_does_not_parse_is_named_by_number_only(monkeypatch, capsys,
                                                                     caplog):
    monkeypatch.setattr("sys.stdin", io.StringIO("GOOD=1\n# note\nhf_Secret123 KEY=x\n"))
    with caplog.at_level(logging.DEBUG):
        assert run(["secrets", "push", "n", "-"]) == 2
    out, err = capsys.readouterr()
    assert "line 3" in err and "nothing was pushed" in err
    assert "hf_Secret123" not in out + err + caplog.text
    assert "python-dotenv" not in err + caplog.text  # no library warning either


def test_config_shows_persist_connections_and_drops_a_trailing_slash(monkeypatch, capsys):
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", DEAD + "/")
    monkeypatch.setenv("TPUCTL_PERSIST_CONNECTIONS", "45")
    assert run(["config", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["api_endpoint"]["value"] == DEAD
    assert doc["persist_connections"] == {"value": "45",
                                          "source": "$TPUCTL_PERSIST_CONNECTIONS"}
    monkeypatch.delenv("TPUCTL_PERSIST_CONNECTIONS")
    monkeypatch.setenv("CI", "true")
    assert run(["config"]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines()
               if ln.startswith("persist_connections"))
    assert row.split()[1] == "0" and "CI" in row
