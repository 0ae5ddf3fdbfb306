"""The Cloud port: a small interface of verbs with frozen dataclasses in and out.

Every verb raises typed errors only (tpuctl/errors.py): NotFoundError (3) for a missing
resource, UsageError (2) for a request the API rejects, CapacityError / CloudError (4) for
stockouts, quota and everything else the API or the network does. Verbs that change
something return the name of a long-running operation for `wait_operation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tpuctl.model import NodeSpec, Slice


@dataclass(frozen=True)
class GuestAttribute:
    worker: int
    namespace: str
    key: str
    value: str


class Cloud(Protocol):
    @property
    def project(self) -> str: ...

    @property
    def zone(self) -> str: ...

    @property
    def endpoint(self) -> str | None:
        """None: real GCP; else a TPU v2 REST server (the emulator)."""
        ...

    def in_zone(self, zone: str) -> Cloud:
        """The same cloud (project, endpoint, credentials) in another zone."""
        ...

    def caller(self) -> str:
        """Who makes the calls (an account email, or the local user for the emulator):
        the owner of what this user creates."""
        ...

    def get_node(self, name: str) -> Slice:
        """The node with its workers (in network-endpoint order) and, once READY, their
        host keys and SSH ports from guest attributes."""
        ...

    def list_nodes(self) -> list[Slice]:
        """Every node of the zone (without host keys)."""
        ...

    def create_node(self, spec: NodeSpec) -> str:
        """Start creating the node; a node of that name already there is a UsageError."""
        ...

    def delete_node(self, name: str) -> str: ...

    def create_queued_resource(self, spec: NodeSpec) -> str:
        """A queued resource of one node, named like the node, provisioned when capacity
        frees."""
        ...

    def queued_resource_state(self, name: str) -> str:
        """ACCEPTED, WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, FAILED, ..."""
        ...

    def queued_resource_error(self, name: str) -> str:
        """Why a FAILED queued resource failed (its failedData's message), else ""."""
        ...

    def delete_queued_resource(self, name: str) -> str:
        """Deletes the queued resource and the node it made (force)."""
        ...

    def set_metadata(self, name: str, metadata: dict[str, str]) -> str:
        """Replace the node's metadata as a whole."""
        ...

    def project_metadata(self) -> dict[str, str]:
        """The project's common instance metadata (Compute `projects.get`): where
        `enable-oslogin` may be set for every VM of the project."""
        ...

    def account(self) -> str:
        """The signed-in account (an email) whose OS Login profile holds this user's keys."""
        ...

    def oslogin_user(self, public_key: str) -> tuple[str, bool]:
        """Import `public_key` into the account's OS Login profile unless it is there;
        (the account's POSIX username for this project, whether it was imported now)."""
        ...

    def list_runtime_versions(self) -> list[str]:
        """The zone's runtime versions; empty when the cloud cannot say (nothing is then
        checked locally, and the API judges the create request)."""
        ...

    def operation_error(self, op_name: str) -> tuple[int, str] | None:
        """(google.rpc code, message) of a finished operation that failed, else None."""
        ...

    def wait_operation(
        self,
        op_name: str,
        *,
        timeout: float,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        """Until the operation is done (TimeoutExpired past `timeout`; CloudError when it
        failed)."""
        ...


class WrappedCloud:
    """Where a Cloud that wraps another one (multislice groups, --dry-run's recorder) is:
    the inner one's project, zone and endpoint."""

    _inner: Cloud

    @property
    def project(self) -> str:
        return self._inner.project

    @property
    def zone(self) -> str:
        return self._inner.zone

    @property
    def endpoint(self) -> str | None:
        return self._inner.endpoint
