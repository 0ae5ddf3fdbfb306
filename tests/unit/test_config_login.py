"""`tpuctl config` says how workers are reached and whether OS Login applies, and why."""

from __future__ import annotations

import pytest

from tests.fakes import FakeCloud
from tpuctl.errors import ConfigError
from tpuctl.ops.access import login_mode
from tpuctl.ops.route import SshRoute
from tpuctl.ops.settings import show_config


@pytest.fixture(autouse=True)
def _where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TPUCTL_PROJECT", "proj")
    monkeypatch.setenv("TPUCTL_ZONE", "zone-a")


def test_config_shows_os_login_from_the_projects_metadata_and_the_way_in():
    cloud = FakeCloud()
    cloud.world.project_metadata = {"enable-oslogin": "TRUE"}
    report = show_config(route=SshRoute(proxy_jump="me@bastion", source="flags"),
                         login=lambda: login_mode(cloud, {})).to_dict()
    assert report["login"]["value"] == "oslogin"
    assert "enable-oslogin=TRUE in project proj's metadata" in str(report["login"]["source"])
    assert report["ssh_route"] == {"value": "jump host me@bastion, internal IPs",
                                   "source": "flags"}
    cloud.world.project_metadata = {}
    assert show_config(login=lambda: login_mode(cloud, {})).to_dict()["login"]["value"] == (
        "metadata")


def test_config_shows_an_unknown_login_instead_of_failing():
    def no_project() -> tuple[bool, str]:
        raise ConfigError("no project configured")

    report = show_config(login=no_project).to_dict()
    assert report["login"] == {"value": None, "source": "unknown: no project configured"}
    assert report["zone"]["value"] == "zone-a"  # everything else still shown
