"""Builds the Cloud adapter for a command from resolved configuration (lazily: it is heavy)."""

from __future__ import annotations

from tpuctl.cloud.base import Cloud
from tpuctl.config import CloudConfig, require_project_zone, resolve


def cloud_from_options(
    *, api_endpoint: str | None, project: str | None, zone: str | None
) -> Cloud:
    cfg: CloudConfig = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    return cloud_from_config(cfg)


def cloud_from_config(cfg: CloudConfig) -> Cloud:
    project, zone = require_project_zone(cfg)
    from tpuctl.cloud.gcp import GcpCloud

    return GcpCloud(project=project, zone=zone, endpoint=cfg.endpoint.value)
