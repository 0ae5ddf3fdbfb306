"""`tpuctl config`: which cloud, project and zone commands would use, and why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tpuctl.ops.route import SshRoute


@dataclass(frozen=True)
class ConfigReport:
    # setting -> {"value", "source"}: api_endpoint, project, zone, config_file, api_token
    # (never the token: "(set)" and its file), persist_connections, idle_warn (seconds),
    # prices (the user's price file when there is one; the shipped table otherwise); with a
    # way to ask: ssh_route (how workers are reached) and login (metadata or OS Login, why)
    settings: dict[str, dict[str, str | None]]

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return self.settings


def show_config(api_endpoint: str | None = None, project: str | None = None,
                zone: str | None = None, *, route: SshRoute | None = None,
                login: Callable[[], tuple[bool, str]] | None = None) -> ConfigReport:
    """`route`: the way in the flags and tpuctl.yaml give; `login`: asks the project's
    metadata whether OS Login applies (one API call; its failure is shown, not raised)."""
    from tpuctl.config import api_token, idle_warn_setting, persist_setting, resolve
    from tpuctl.errors import TpuctlError
    from tpuctl.prices import override_path, shipped, tables

    cfg = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    token, source = api_token(cfg.endpoint.value)
    seconds, persist_source = persist_setting()
    idle_s, idle_source = idle_warn_setting()
    used = tables()
    prices = {"value": str(override_path()) if used[0] is not shipped() else None,
              "source": " + ".join(t.source for t in used)}
    settings: dict[str, dict[str, str | None]] = {
        **cfg.to_dict(),
        "api_token": {"value": "(set)" if token else None, "source": source},
        "persist_connections": {"value": f"{seconds:g}", "source": persist_source},
        "idle_warn": {"value": f"{idle_s:g}", "source": idle_source},
        "prices": prices}
    if route is not None:
        settings["ssh_route"] = {"value": route.describe(), "source": route.source}
    if login is not None:
        try:
            oslogin, why = login()
            settings["login"] = {"value": "oslogin" if oslogin else "metadata",
                                 "source": why + " (a node's own enable-oslogin wins)"}
        except TpuctlError as e:
            settings["login"] = {"value": None, "source": f"unknown: {e.message[:160]}"}
    return ConfigReport(settings)
