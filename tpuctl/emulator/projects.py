"""A project's common instance metadata, as the Compute API serves it
(`GET compute/v1/projects/{project}`: `commonInstanceMetadata.items[{key, value}]`): where
`enable-oslogin=TRUE` or project-wide `ssh-keys` live. Set through the admin API only; every
project exists, with empty metadata until set. Saved with the emulator's state."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from tpuctl.emulator.errors import invalid_argument
from tpuctl.emulator.persistence import Store

_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")  # Compute's metadata keys
MAX_TOTAL = 512 * 1024  # bytes of all keys and values


def _number(project: str) -> str:
    return str(int(hashlib.sha256(project.encode()).hexdigest(), 16) % 10**12)


def default_service_account(project: str) -> str:
    """The project's default Compute Engine service account."""
    return f"{_number(project)}-compute@developer.gserviceaccount.com"


class Projects:
    """Project metadata by project id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def metadata(self, project: str) -> dict[str, str]:
        return dict(self._store.project_metadata.get(project, {}))

    def set_metadata(self, project: str, changes: Mapping[str, Any]) -> dict[str, str]:
        """Merge `changes` (a `null` value removes that key); validated as Compute does
        before anything changes."""
        if not isinstance(changes, Mapping):
            raise invalid_argument("metadata must be a JSON object of KEY: VALUE")
        new = self.metadata(project)
        for key, value in changes.items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise invalid_argument(
                    f"Invalid value for field 'resource.commonInstanceMetadata.items.key': "
                    f"{key!r}. Must be a match of regex '[a-zA-Z0-9-_]{{1,128}}'"
                )
            if value is None:
                new.pop(key, None)
            elif isinstance(value, str):
                new[key] = value
            else:
                raise invalid_argument(f"metadata value of {key!r} must be a string")
        if sum(len(k) + len(v) for k, v in new.items()) > MAX_TOTAL:
            raise invalid_argument("the metadata of a project must be less than 512 KB")
        if new:
            self._store.project_metadata[project] = new
        else:
            self._store.project_metadata.pop(project, None)
        self._store.save()
        return new

    def resource(self, project: str, self_link: str) -> dict[str, Any]:
        """The Project as `compute.projects.get` answers it."""
        items = self.metadata(project)
        digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).digest()[:8]
        metadata: dict[str, Any] = {"kind": "compute#metadata",
                                    "fingerprint": base64.b64encode(digest).decode()}
        if items:
            metadata["items"] = [{"key": k, "value": v} for k, v in sorted(items.items())]
        return {
            "kind": "compute#project",
            "id": _number(project),
            "name": project,
            "creationTimestamp": "2024-01-01T00:00:00.000-07:00",
            "commonInstanceMetadata": metadata,
            "selfLink": self_link,
            "defaultServiceAccount": default_service_account(project),
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
            "defaultNetworkTier": "PREMIUM",
        }
