"""The Cloud port for `--dry-run`: reads go to the real cloud (or, for `create` and `up`, to
nobody: every node is one that does not exist yet), changes are recorded as the REST requests
google-cloud-tpu would send (tests/unit/test_dryrun.py holds them to its own messages) and
answered with an operation that is already done."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any, cast

from tpuctl.accelerators import parse_accelerator
from tpuctl.cloud.base import Cloud, WrappedCloud
from tpuctl.dryrun.transcript import ApiCall, Transcript
from tpuctl.errors import NotFoundError
from tpuctl.model import NodeSpec, Slice, Worker

OP_PREFIX = "dry-run/operations/"
SSH_KEYS = "ssh-keys"


def node_body(spec: NodeSpec) -> dict[str, Any]:
    """A node as the TPU v2 REST API takes it (JSON field names, defaults left out)."""
    body: dict[str, Any] = {"acceleratorType": spec.accelerator_type,
                            "runtimeVersion": spec.runtime_version}
    if spec.description:
        body["description"] = spec.description
    if spec.labels:
        body["labels"] = dict(sorted(spec.labels.items()))
    if spec.metadata:
        body["metadata"] = dict(sorted(spec.metadata.items()))
    net = spec.network
    config = {k: v for k, v in (("enableExternalIps", net.external_ips),
                                ("network", net.network), ("subnetwork", net.subnetwork)) if v}
    if config:
        body["networkConfig"] = config
    if net.tags:
        body["tags"] = list(net.tags)
    return body


def simulated_node(cloud: Cloud, spec: NodeSpec) -> Slice:
    """The READY node a recorded create would make: one worker per host of the type, with
    placeholders for what only the cloud can say (addresses, host keys)."""
    hosts = parse_accelerator(spec.accelerator_type).hosts * spec.slices  # a group: all
    external = spec.network.external_ips
    workers = tuple(Worker(i, f"<w{i}-ip>", 22, f"ssh-ed25519 <w{i}-host-key>",
                           external_ip=f"<w{i}-external-ip>" if external else None,
                           hostname=f"<w{i}-instance>")
                    for i in range(hosts))
    return Slice(name=spec.name, project=cloud.project, zone=cloud.zone,
                 accelerator_type=spec.accelerator_type, runtime_version=spec.runtime_version,
                 state="READY", labels=dict(spec.labels), metadata=dict(spec.metadata),
                 workers=workers, spot=spec.spot, slices=spec.slices)


class RecordingCloud(WrappedCloud):
    def __init__(self, inner: Cloud, transcript: Transcript, *, read_api: bool) -> None:
        self._inner = inner
        self._t = transcript
        self._read = read_api
        self._made: dict[str, Slice] = {}  # nodes recorded creates would have made
        self._ops = itertools.count(1)

    @property
    def _parent(self) -> str:
        return f"/v2/projects/{self.project}/locations/{self.zone}"

    def _record(self, method: str, path: str, body: dict[str, Any] | None = None) -> str:
        self._t.add(ApiCall(method, self._parent + path, body))
        return f"{OP_PREFIX}{next(self._ops)}"

    def in_zone(self, zone: str) -> Cloud:
        return cast(Cloud, RecordingCloud(self._inner.in_zone(zone), self._t,
                                          read_api=self._read))

    def caller(self) -> str:
        if self._read:
            return self._inner.caller()
        # without the API (and its credentials): who a custom endpoint sees, or on GCP the
        # account gcloud is configured with
        from tpuctl.config import gcloud_config
        from tpuctl.sshkeys import ssh_username

        if self.endpoint:
            return ssh_username()
        return gcloud_config().get("account") or ssh_username()

    # -- reads ---------------------------------------------------------------------------------
    def get_node(self, name: str) -> Slice:
        if name in self._made:
            return self._made[name]
        if not self._read:
            raise NotFoundError(f"node {name!r} in {self.zone}: not found (dry run: as for a "
                                "node that does not exist yet)")
        return self._inner.get_node(name)

    def list_nodes(self) -> list[Slice]:
        return self._inner.list_nodes() if self._read else list(self._made.values())

    def queued_resource_state(self, name: str) -> str:
        if name in self._made or not self._read:
            return "ACTIVE"
        return self._inner.queued_resource_state(name)

    def queued_resource_error(self, name: str) -> str:
        if name in self._made or not self._read:
            return ""
        return self._inner.queued_resource_error(name)

    def list_runtime_versions(self) -> list[str]:
        return self._inner.list_runtime_versions() if self._read else []

    def project_metadata(self) -> dict[str, str]:
        """Without the API, as for a project that does not enable OS Login."""
        return self._inner.project_metadata() if self._read else {}

    def account(self) -> str:
        return self._inner.account()

    def oslogin_user(self, public_key: str) -> tuple[str, bool]:
        """Recorded as OS Login's import request; the login name is the one OS Login
        derives from the account's email (the dry run does not read the profile)."""
        import re

        account = self.account()
        self._t.add(ApiCall("POST", f"oslogin/v1/users/{account}:importSshPublicKey"
                            f"?projectId={self.project}", {"key": public_key}))
        return re.sub(r"[^a-z0-9_]", "_", account.lower())[:32], True

    def operation_error(self, op_name: str) -> tuple[int, str] | None:
        if op_name.startswith(OP_PREFIX):
            return None
        return self._inner.operation_error(op_name)

    def wait_operation(self, op_name: str, *, timeout: float,
                       on_poll: Callable[[], None] | None = None) -> None:
        if not op_name.startswith(OP_PREFIX):
            self._inner.wait_operation(op_name, timeout=timeout, on_poll=on_poll)

    # -- changes: recorded ---------------------------------------------------------------------
    def create_node(self, spec: NodeSpec) -> str:
        from tpuctl.cloud.bodies import node_fields

        body = node_body(spec)
        body.update(node_fields(spec, self.project, self.zone, queued=False))
        op = self._record("POST", f"/nodes?nodeId={spec.name}", body)
        self._made[spec.name] = simulated_node(self, spec)
        return op

    def create_queued_resource(self, spec: NodeSpec) -> str:
        from tpuctl.cloud.bodies import node_fields, queued_fields

        node = {**node_body(spec), **node_fields(spec, self.project, self.zone, queued=True)}
        from tpuctl.cloud.bodies import node_spec_target

        node_spec = {"parent": self._parent.removeprefix("/v2/"), **node_spec_target(spec),
                     "node": node}
        body: dict[str, Any] = {"tpu": {"nodeSpec": [node_spec]}}
        body.update(queued_fields(spec, self.project, self.zone))
        op = self._record("POST", f"/queuedResources?queuedResourceId={spec.name}", body)
        self._made[spec.name] = dataclasses.replace(
            simulated_node(self, spec),
            queued_resource=f"{self._parent.removeprefix('/v2/')}/queuedResources/{spec.name}")
        return op

    def delete_node(self, name: str) -> str:
        return self._record("DELETE", f"/nodes/{name}")

    def delete_queued_resource(self, name: str) -> str:
        return self._record("DELETE", f"/queuedResources/{name}?force=true")

    def set_metadata(self, name: str, metadata: dict[str, str]) -> str:
        """The new metadata, shown as a change: values that stay are not repeated (they may
        be other users' data), and of `ssh-keys` only the lines added."""
        old = self.get_node(name).metadata
        shown: dict[str, str] = {}
        for key, value in sorted(metadata.items()):
            if old.get(key) == value:
                shown[key] = "<unchanged>"
            elif key == SSH_KEYS:
                kept = set(old.get(key, "").splitlines())
                added = [ln for ln in value.splitlines() if ln not in kept]
                shown[key] = "\n".join([f"<{len(kept)} line(s) kept>", *added] if kept
                                       else added)
            else:
                shown[key] = value
        return self._record("PATCH", f"/nodes/{name}?updateMask=metadata",
                            {"metadata": shown})
