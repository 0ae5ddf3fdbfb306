"""`tpuctl config`: which cloud, project and zone commands would use, and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigReport:
    # setting -> {"value", "source"}: api_endpoint, project, zone, config_file, api_token
    # (never the token: "(set)" and its file), persist_connections, idle_warn (seconds),
    # prices (the user's price file when there is one; the shipped table otherwise)
    settings: dict[str, dict[str, str | None]]

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        return self.settings


def show_config(api_endpoint: str | None = None, project: str | None = None,
                zone: str | None = None) -> ConfigReport:
    from tpuctl.config import api_token, idle_warn_setting, persist_setting, resolve
    from tpuctl.prices import override_path, shipped, tables

    cfg = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    token, source = api_token(cfg.endpoint.value)
    seconds, persist_source = persist_setting()
    idle_s, idle_source = idle_warn_setting()
    used = tables()
    prices = {"value": str(override_path()) if used[0] is not shipped() else None,
              "source": " + ".join(t.source for t in used)}
    return ConfigReport({
        **cfg.to_dict(),
        "api_token": {"value": "(set)" if token else None, "source": source},
        "persist_connections": {"value": f"{seconds:g}", "source": persist_source},
        "idle_warn": {"value": f"{idle_s:g}", "source": idle_source},
        "prices": prices})
