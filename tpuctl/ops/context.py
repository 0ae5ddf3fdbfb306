"""Builds the Cloud adapter for a command from resolved configuration (lazily: it is heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from tpuctl.cloud.base import Cloud
from tpuctl.config import CloudConfig, require_project_zone, resolve

if TYPE_CHECKING:
    from tpuctl.cloud.gcp import GcpCloud


def cloud_from_options(
    *, api_endpoint: str | None, project: str | None, zone: str | None
) -> Cloud:
    cfg: CloudConfig = resolve(api_endpoint=api_endpoint, project=project, zone=zone)
    return cloud_from_config(cfg)


def cloud_from_config(cfg: CloudConfig) -> Cloud:
    project, zone = require_project_zone(cfg)
    return cast(Cloud, LazyCloud(project, zone, cfg.endpoint.value))


class LazyCloud:
    """The Cloud port whose google-cloud adapter is built on the first API call.

    google-cloud-tpu costs ~0.25 s to import; a command answered from the worker cache
    (ops/worker_cache.py) never pays it. project, zone and endpoint are known without it.
    """

    def __init__(self, project: str, zone: str, endpoint: str | None) -> None:
        self.project = project
        self.zone = zone
        self.endpoint = endpoint
        self._real: GcpCloud | None = None

    def __getattr__(self, attr: str) -> Any:  # noqa: ANN401  (only called for API verbs)
        if attr.startswith("_"):  # never for our own state (copy/pickle probe those)
            raise AttributeError(attr)
        if self._real is None:
            from tpuctl.cloud.gcp import GcpCloud

            self._real = GcpCloud(project=self.project, zone=self.zone,
                                  endpoint=self.endpoint)
        return getattr(self._real, attr)
