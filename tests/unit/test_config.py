import json
import os

import pytest

from tpuctl.config import resolve
from tpuctl.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("TPUCTL_API_ENDPOINT", "TPUCTL_PROJECT", "TPUCTL_ZONE", "CLOUDSDK_CORE_PROJECT",
                "CLOUDSDK_COMPUTE_ZONE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.chdir(tmp_path)


def test_flag_beats_env_beats_file(monkeypatch, tmp_path):
    (tmp_path / "tpuctl.yaml").write_text("project: from-file\nzone: file-zone\n")
    cfg = resolve()
    assert (cfg.project.value, cfg.zone.value) == ("from-file", "file-zone")
    assert cfg.project.source.startswith("tpuctl.yaml")
    monkeypatch.setenv("CLOUDSDK_CORE_PROJECT", "from-gcloud-env")
    assert resolve().project.value == "from-gcloud-env"
    monkeypatch.setenv("TPUCTL_PROJECT", "from-env")
    assert resolve().project == resolve().project
    assert resolve().project.source == "$TPUCTL_PROJECT"
    cfg = resolve(project="from-flag", zone="flag-zone")
    assert (cfg.project.value, cfg.project.source) == ("from-flag", "--project")
    assert cfg.zone.value == "flag-zone"
    assert cfg.endpoint.value is None


def test_gcloud_config_file_is_last_resort(tmp_path):
    conf = tmp_path / "gcloud" / "configurations"
    conf.mkdir(parents=True)
    (conf / "config_default").write_text("[core]\nproject = gp\n[compute]\nzone = gz\n")
    cfg = resolve()
    assert (cfg.project.value, cfg.zone.value) == ("gp", "gz")
    assert cfg.zone.source == "gcloud config"


def test_endpoint_defaults_project_and_zone(monkeypatch):
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", "http://127.0.0.1:9")
    cfg = resolve()
    assert cfg.endpoint.value == "http://127.0.0.1:9"
    assert (cfg.project.value, cfg.zone.value) == ("local-project", "local-a")


def test_endpoint_without_scheme_is_rejected():
    with pytest.raises(ConfigError, match="has no scheme"):
        resolve(api_endpoint="127.0.0.1:8470")


def test_unknown_key_in_repo_file(tmp_path):
    (tmp_path / "tpuctl.yaml").write_text("projct: typo\n")
    with pytest.raises(ConfigError, match="unknown key 'projct'"):
        resolve()


def test_persist_connections_precedence(monkeypatch, tmp_path):
    from tpuctl.config import DEFAULT_PERSIST_S, persist_seconds

    monkeypatch.delenv("TPUCTL_PERSIST_CONNECTIONS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert persist_seconds() == DEFAULT_PERSIST_S
    monkeypatch.setenv("CI", "true")
    assert persist_seconds() == 0  # nothing outlives a CI step unless asked
    (tmp_path / "tpuctl.yaml").write_text("persist_connections: 45\n")
    assert persist_seconds() == 45
    monkeypatch.setenv("TPUCTL_PERSIST_CONNECTIONS", "0")
    assert persist_seconds() == 0


@pytest.mark.parametrize("bad", ["soon", "-1", "1e9", "nan"])
def test_persist_connections_rejects_non_durations(monkeypatch, bad):
    from tpuctl.config import persist_seconds

    monkeypatch.setenv("TPUCTL_PERSIST_CONNECTIONS", bad)
    with pytest.raises(ConfigError, match=f"persist_connections '{bad}'.*TPUCTL_PERSIST"):
        persist_seconds()


# ------------------------------------------------------------------ trusting tpuctl.yaml

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="planting another user's file needs root")


@needs_root
def test_a_file_planted_by_another_user_in_a_shared_parent_is_ignored(tmp_path, capsys):
    """/tmp-style: a world-writable sticky parent where anyone may drop a tpuctl.yaml."""
    shared = tmp_path / "shared"
    (shared / "work").mkdir(parents=True)
    shared.chmod(0o1777)
    planted = shared / "tpuctl.yaml"
    planted.write_text("api_endpoint: http://127.0.0.1:9\nproject: evil\n")
    os.chown(planted, 65534, 65534)
    os.chdir(shared / "work")
    cfg = resolve()
    assert cfg.endpoint.value is None and cfg.project.value != "evil"
    assert cfg.config_file.value is None
    err = capsys.readouterr().err
    assert f"warning: ignoring {planted}: owned by uid 65534" in err
    assert len(err.splitlines()) == 1
    # a symbolic link of theirs to a file of yours is theirs, too
    planted.unlink()
    mine = tmp_path / "mine.yaml"
    mine.write_text("project: mine\n")
    planted.symlink_to(mine)
    os.lchown(planted, 65534, 65534)
    assert resolve().project.value != "mine"
    assert "a symbolic link owned by uid 65534" in capsys.readouterr().err


def test_a_writable_file_is_ignored_and_a_safe_one_in_the_repo_is_used(tmp_path, capsys):
    from tpuctl.cli.main import run

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    cfg_file = repo / "tpuctl.yaml"
    cfg_file.write_text("project: repo-project\n")
    cfg_file.chmod(0o664)
    os.chdir(repo / "sub")
    assert resolve().project.value != "repo-project"
    assert f"ignoring {cfg_file}: group- or world-writable (mode 664): `chmod go-w" in \
        capsys.readouterr().err
    cfg_file.chmod(0o644)
    cfg = resolve()
    assert cfg.project.value == "repo-project"
    assert cfg.config_file.value == str(cfg_file)
    assert run(["config", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_file"]["value"] == str(cfg_file)
    assert shown["project"]["source"] == f"tpuctl.yaml ({cfg_file})"


def test_the_search_stops_at_the_repository_root_and_at_home(tmp_path, monkeypatch):
    (tmp_path / "tpuctl.yaml").write_text("project: above\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    os.chdir(repo)
    assert resolve().project.value is None  # nothing from above the repository
    home = tmp_path / "home"
    (home / "scratch").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    os.chdir(home / "scratch")
    assert resolve().project.value is None  # nor from above $HOME
    (home / "tpuctl.yaml").write_text("project: at-home\n")
    assert resolve().project.value == "at-home"


# ------------------------------------------------------------------ the emulator's token


def _fake_emulator_dir(d, endpoint: str, token: str):
    d.mkdir(parents=True)
    (d / "token").write_text(token + "\n")
    (d / "emulator.json").write_text(json.dumps({"pid": os.getpid(), "endpoint": endpoint,
                                                 "token": token}))
    return d / "token"


def test_the_token_is_found_for_its_own_endpoint_only(tmp_path, monkeypatch):
    from tpuctl.config import api_token

    token_file = _fake_emulator_dir(tmp_path / "state", "http://127.0.0.1:5000", "t-1")
    monkeypatch.setenv("TPUCTL_API_TOKEN_FILE", str(token_file))
    assert api_token("http://127.0.0.1:5000/") == ("t-1", f"$TPUCTL_API_TOKEN_FILE ({token_file})")
    # another endpoint never gets it (a stray --api-endpoint, a port someone else took)
    assert api_token("http://127.0.0.1:5001")[0] is None
    assert api_token(None)[0] is None  # GCP: Application Default Credentials
    # the default emulator's, without the variable
    monkeypatch.delenv("TPUCTL_API_TOKEN_FILE")
    _fake_emulator_dir(tmp_path / "home" / ".tpuctl" / "emulator", "http://127.0.0.1:6000",
                       "t-2")
    assert api_token("http://127.0.0.1:6000")[0] == "t-2"
    assert api_token("http://127.0.0.1:5000")[0] is None


def test_config_names_the_tokens_source_never_the_token(tmp_path, monkeypatch, capsys):
    from tpuctl.cli.main import run

    token_file = _fake_emulator_dir(tmp_path / "state", "http://127.0.0.1:5000", "s3cr3t-tok")
    monkeypatch.setenv("TPUCTL_API_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("TPUCTL_API_ENDPOINT", "http://127.0.0.1:5000")
    assert run(["config", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["api_token"] == {"value": "(set)",
                                            "source": f"$TPUCTL_API_TOKEN_FILE ({token_file})"}
    assert run(["config"]) == 0
    assert "s3cr3t-tok" not in out + capsys.readouterr().out
