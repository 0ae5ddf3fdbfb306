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
