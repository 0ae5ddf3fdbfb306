"""The Cloud port on google-cloud-tpu's REST transport and google-auth.

Imported only by commands that talk to the API: google-cloud costs ~0.25 s to import.
Any TPU v2 REST server works through `endpoint` (the emulator among them).
"""

# ruff: noqa: E402  (one sys.modules line must precede the google imports)
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# google-api-core's async REST support is optional (guarded by find_spec / ImportError), and it
# would import aiohttp on every command because the emulator needs aiohttp installed. tpuctl
# uses only the synchronous REST client: skipping it saves ~0.15 s per command that calls the
# API (docs/performance.md). The emulator e2e tests exercise the client with this in place.
sys.modules.setdefault("google.auth.aio.transport.sessions", None)  # type: ignore[arg-type]

import google.auth.credentials
from google.api_core import exceptions as gexc
from google.cloud import tpu_v2

from tpuctl import backoff
from tpuctl.cloud.base import GuestAttribute
from tpuctl.cloud.bodies import capacity_type, merge, node_fields, node_spec_target, queued_fields
from tpuctl.cloud.retry import api_retry, is_capacity_error
from tpuctl.errors import (
    CapacityError,
    CloudError,
    ConfigError,
    NotFoundError,
    TimeoutExpired,
    UsageError,
)
from tpuctl.model import NodeSpec, Slice, Worker

EMULATOR_PORT_NAMESPACE = "tpuctl-emulator"


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn google-api-core exceptions into typed tpuctl errors naming `what` was attempted."""
    try:
        yield
    except gexc.NotFound as e:
        raise NotFoundError(f"{what}: not found ({_msg(e)})",
                            hint="check the name, --project and --zone (`tpuctl list`)") from None
    except (gexc.AlreadyExists, gexc.Conflict) as e:
        raise UsageError(f"{what}: already exists ({_msg(e)})",
                         hint="choose another name, or delete the existing one") from None
    except gexc.BadRequest as e:  # 400: InvalidArgument, FailedPrecondition, OutOfRange
        raise UsageError(f"{what}: rejected by the API ({_msg(e)})",
                         hint="fix the value named above") from None
    except gexc.Unauthorized as e:  # 401 (Unauthenticated is its gRPC-coded subclass)
        raise CloudError(f"{what}: not authenticated ({_msg(e)})",
                         hint="on GCP: `gcloud auth application-default login`; the local "
                         "emulator needs its token: `eval \"$(tpuctl emulator start)\"` sets "
                         "TPUCTL_API_TOKEN_FILE (see `tpuctl config`)") from None
    except gexc.Forbidden as e:  # 403 (PermissionDenied is its gRPC-coded subclass)
        raise CloudError(f"{what}: permission denied ({_msg(e)})",
                         hint="check `gcloud auth application-default login` and that the TPU "
                         "API is enabled for the project") from None
    except gexc.GoogleAPICallError as e:
        if is_capacity_error(e):
            raise CapacityError(f"{what}: out of capacity or quota ({_msg(e)})",
                             hint="try another zone (--zone), a smaller type, or --queued"
                             ) from None
        raise CloudError(f"{what}: cloud API error ({_msg(e)})",
                         hint="retry later; if it persists, check the service status") from None
    except gexc.RetryError as e:
        raise CloudError(f"{what}: cloud API did not answer ({e.cause or e})",
                         hint="is the endpoint reachable? for the emulator: "
                         "`tpuctl emulator status`") from None
    except Exception as e:  # requests' connection errors and friends
        if type(e).__module__.startswith(("requests", "urllib3")):
            raise CloudError(f"{what}: cannot reach the TPU API ({type(e).__name__})",
                             hint="is the endpoint up? for the local emulator run "
                             "`tpuctl emulator start`") from None
        raise


# The REST transport's messages name the request as "GET <url>?$alt=json;enum-encoding=int:
# ..." (percent-encoded): the query is the client's wire format, noise to a reader.
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?[^\s:]*")


def _msg(e: gexc.GoogleAPICallError) -> str:
    line = str(e.message or e).strip().splitlines()[0]
    return _URL_QUERY.sub(r"\1", line)[:300]


class BearerToken(google.auth.credentials.Credentials):
    """A fixed bearer token (the local emulator's, emulator/auth.py), or none at all: nothing
    to refresh, so a refused call comes back as a 401 (Unauthenticated, exit 4 with a hint),
    never as a refresh error (AnonymousCredentials raise one on a 401)."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self.token = token

    def refresh(self, request: Any) -> None:  # google-auth's transport request
        return None

    def apply(self, headers: Any, token: str | None = None) -> None:
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"


def credentials(endpoint: str | None) -> google.auth.credentials.Credentials:
    """The emulator's token for a custom endpoint, else Application Default Credentials."""
    if endpoint:
        from tpuctl.config import api_token

        return BearerToken(api_token(endpoint)[0])
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError:
        raise ConfigError(
            "no Google Cloud credentials found",
            hint="run `gcloud auth application-default login`, or use the local emulator: "
            "`tpuctl emulator start`",
        ) from None
    return creds


def make_client(endpoint: str | None,
                creds: google.auth.credentials.Credentials | None = None) -> tpu_v2.TpuClient:
    creds = creds or credentials(endpoint)
    if endpoint:
        return tpu_v2.TpuClient(transport="rest", client_options={"api_endpoint": endpoint},
                                credentials=creds)
    return tpu_v2.TpuClient(transport="rest", credentials=creds)


def account_of(creds: object) -> str | None:
    """The account ADC act as, when the credentials say (service accounts, impersonation,
    user credentials that carry it)."""
    for attr in ("service_account_email", "signer_email", "account"):
        value = getattr(creds, attr, None)
        if isinstance(value, str) and "@" in value:
            return value
    return None


def node_to_slice(node: Any, guest: list[GuestAttribute] | None = None) -> Slice:
    """Map the API's Node to a Slice; workers come from network endpoints, never the name.

    Every value that can reach an argv, a file or a path is validated (tpuctl/validate.py):
    a bad one is a CloudError (exit 4) naming it, and nothing uses it."""
    try:
        return _node_to_slice(node, guest or [])
    except ValueError as e:
        where = str(node.name).rsplit("/", 1)[-1][:64]
        raise CloudError(f"the TPU API answered an invalid value for node {where!r}: {e}",
                         hint="tpuctl refuses to use it; check that --api-endpoint is the "
                         "TPU API (or your own emulator)") from None


def _node_to_slice(node: Any, guest: list[GuestAttribute]) -> Slice:
    from tpuctl import validate

    parts = node.name.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" \
            or parts[4] != "nodes":
        raise ValueError(f"node name {node.name[:80]!r} is not projects/P/locations/Z/nodes/N")
    project, zone = validate.project(parts[1]), validate.zone(parts[3])
    name = validate.plain_name(parts[5] or "-", "node name")
    host_keys: dict[int, str] = {}
    ports: dict[int, int] = {}
    hostnames: dict[int, str] = {}
    for ga in guest:
        if ga.namespace == "hostkeys" and ga.key == "ssh-ed25519":
            host_keys[ga.worker] = validate.host_key(ga.value)
        if ga.namespace == EMULATOR_PORT_NAMESPACE and ga.key == "ssh-port":
            ports[ga.worker] = validate.port(ga.value)
        if ga.key == "hostname":  # the VM's instance name, in any namespace (as gcloud reads it)
            hostnames[ga.worker] = validate.instance_name(ga.value)
    workers = tuple(
        Worker(index=i, ip=validate.ip_address(ep.ip_address), ssh_port=ports.get(i, 22),
               host_key=host_keys.get(i),
               external_ip=validate.ip_address(ep.access_config.external_ip)
               if ep.access_config.external_ip else None,
               hostname=hostnames.get(i))
        for i, ep in enumerate(node.network_endpoints)
        if ep.ip_address  # a blank endpoint is a host that has not registered yet
    )
    labels = {validate.printable(k, "label key"): validate.printable(v, "label value")
              for k, v in node.labels.items()}
    sched = node.scheduling_config
    return Slice(
        name=name,
        project=project,
        zone=zone,
        accelerator_type=validate.plain_name(node.accelerator_type, "accelerator type"),
        runtime_version=validate.plain_name(node.runtime_version, "runtime version"),
        state=tpu_v2.Node.State(node.state).name,
        health=tpu_v2.Node.Health(node.health).name if node.health else "",
        labels=labels,
        metadata=dict(node.metadata),
        workers=workers,
        spot=bool(sched.spot or sched.preemptible),
        capacity=capacity_type(sched),
        startup_script=bool({"startup-script", "startup-script-url"} & set(node.metadata)),
        create_time=node.create_time.isoformat() if node.create_time else "",
        queued_resource=node.queued_resource,
    )


def _node_message(spec: NodeSpec) -> tpu_v2.Node:
    net = spec.network
    node = tpu_v2.Node(
        accelerator_type=spec.accelerator_type,
        runtime_version=spec.runtime_version,
        labels=spec.labels,
        metadata=spec.metadata,
        description=spec.description,
        tags=list(net.tags),
    )
    if net.external_ips or net.network or net.subnetwork:
        # as gcloud's `tpu-vm create`: external IPs unless --internal-ips (the API's own
        # default is none)
        node.network_config = tpu_v2.NetworkConfig(
            enable_external_ips=net.external_ips, network=net.network or "",
            subnetwork=net.subnetwork or "")
    return node


class GcpCloud:
    """google-cloud-tpu behind the Cloud port. Every wait is bounded by tpuctl itself."""

    def __init__(self, project: str, zone: str, endpoint: str | None = None,
                 client: tpu_v2.TpuClient | None = None) -> None:
        self.project = project
        self.zone = zone
        self.endpoint = endpoint
        self._creds: google.auth.credentials.Credentials | None = \
            None if client else credentials(endpoint)
        self._client = client or make_client(endpoint, self._creds)

    def in_zone(self, zone: str) -> GcpCloud:
        """This cloud in another zone, on the same client and credentials."""
        other = GcpCloud(self.project, zone, self.endpoint, client=self._client)
        other._creds = self._creds
        return other

    def caller(self) -> str:
        """Who makes the calls, for the owner label: the ADC account (else gcloud's
        `core/account`, else the local user) on GCP; the local user on a custom endpoint
        (a local emulator belongs to one OS user)."""
        from tpuctl.config import gcloud_config
        from tpuctl.sshkeys import ssh_username

        if self.endpoint:
            return ssh_username()
        return account_of(self._creds) or gcloud_config().get("account") or ssh_username()

    # -- logins: project metadata, the account, OS Login (cloud/logins.py) ------------------
    def project_metadata(self) -> dict[str, str]:
        from tpuctl.cloud import logins

        with api_errors(f"metadata of project {self.project!r}"):
            return logins.project_metadata(self._credentials(), self.endpoint, self.project)

    def account(self) -> str:
        """The signed-in account: ADC's, else gcloud's `core/account`; on a custom endpoint
        (the emulator) the account it says is signed in."""
        from tpuctl.cloud import logins
        from tpuctl.config import gcloud_config

        if self.endpoint:
            with api_errors("the emulator's signed-in account"):
                return logins.emulator_account(self._credentials(), self.endpoint)
        account = account_of(self._credentials()) or gcloud_config().get("account")
        if not account:
            raise ConfigError("OS Login needs your account, and none is known",
                              hint="`gcloud config set account YOU@example.com`, or use "
                              "credentials that name it")
        return account

    def oslogin_user(self, public_key: str) -> tuple[str, bool]:
        from tpuctl.cloud import logins

        account = self.account()
        with api_errors(f"OS Login profile of {account}"):
            return logins.oslogin_user(self._credentials(), self.endpoint, self.project,
                                       account, public_key)

    def _credentials(self) -> google.auth.credentials.Credentials:
        if self._creds is None:
            self._creds = credentials(self.endpoint)
        return self._creds

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.zone}"

    def node_path(self, name: str) -> str:
        return f"{self.parent}/nodes/{name}"

    def get_node(self, name: str) -> Slice:
        with api_errors(f"node {name!r} in {self.zone}"):
            node = api_retry(self._client.get_node)(request={"name": self.node_path(name)})
            guest: list[GuestAttribute] = []
            if tpu_v2.Node.State(node.state).name == "READY" and node.network_endpoints:
                guest = self.guest_attributes(name)
            return node_to_slice(node, guest)

    def list_nodes(self) -> list[Slice]:
        with api_errors(f"listing nodes in {self.zone}"):
            pager = api_retry(self._client.list_nodes)(request={"parent": self.parent})
            return [node_to_slice(n) for n in pager]

    def create_node(self, spec: NodeSpec) -> str:
        node = _node_message(spec)
        node.scheduling_config = tpu_v2.SchedulingConfig(spot=spec.spot)
        merge(node, node_fields(spec, self.project, self.zone, queued=False))
        with api_errors(f"creating node {spec.name!r} in {self.zone}"):
            # create is safe to retry: a duplicate nodeId answers 409, never a second node
            op = api_retry(self._client.create_node)(
                request={"parent": self.parent, "node_id": spec.name, "node": node}
            )
            return str(op.operation.name)

    def create_queued_resource(self, spec: NodeSpec) -> str:
        """A queued resource holding one node spec; GCP provisions it when capacity frees."""
        node = merge(_node_message(spec),
                      node_fields(spec, self.project, self.zone, queued=True))
        node_spec = merge(tpu_v2.QueuedResource.Tpu.NodeSpec(parent=self.parent, node=node),
                           node_spec_target(spec))
        qr = tpu_v2.QueuedResource(tpu=tpu_v2.QueuedResource.Tpu(node_spec=[node_spec]))
        merge(qr, queued_fields(spec, self.project, self.zone))
        with api_errors(f"queueing node {spec.name!r} in {self.zone}"):
            op = api_retry(self._client.create_queued_resource)(
                request={"parent": self.parent, "queued_resource_id": spec.name,
                         "queued_resource": qr}
            )
            return str(op.operation.name)

    def queued_resource_state(self, name: str) -> str:
        with api_errors(f"queued resource {name!r}"):
            qr = api_retry(self._client.get_queued_resource)(
                request={"name": f"{self.parent}/queuedResources/{name}"}
            )
            return tpu_v2.QueuedResourceState.State(qr.state.state).name

    def queued_resource_error(self, name: str) -> str:
        with api_errors(f"queued resource {name!r}"):
            qr = api_retry(self._client.get_queued_resource)(
                request={"name": f"{self.parent}/queuedResources/{name}"}
            )
        error = qr.state.failed_data.error
        return f"{error.message} (code {error.code})" if error.message else ""

    def delete_queued_resource(self, name: str) -> str:
        with api_errors(f"deleting queued resource {name!r}"):
            op = api_retry(self._client.delete_queued_resource)(
                request={"name": f"{self.parent}/queuedResources/{name}", "force": True}
            )
            return str(op.operation.name)

    def delete_node(self, name: str) -> str:
        with api_errors(f"deleting node {name!r}"):
            op = api_retry(self._client.delete_node)(request={"name": self.node_path(name)})
            return str(op.operation.name)

    def set_metadata(self, name: str, metadata: dict[str, str]) -> str:
        node = tpu_v2.Node(name=self.node_path(name), metadata=metadata)
        with api_errors(f"updating metadata of node {name!r}"):
            op = api_retry(self._client.update_node)(
                request={"node": node, "update_mask": {"paths": ["metadata"]}}
            )
            return str(op.operation.name)

    def guest_attributes(self, name: str) -> list[GuestAttribute]:
        with api_errors(f"guest attributes of node {name!r}"):
            resp = api_retry(self._client.get_guest_attributes)(
                request={"name": self.node_path(name)}
            )
        out = []
        for i, ga in enumerate(resp.guest_attributes):
            for item in ga.query_value.items:
                out.append(GuestAttribute(i, item.namespace, item.key, item.value))
        return out

    def list_runtime_versions(self) -> list[str]:
        with api_errors(f"listing runtime versions in {self.zone}"):
            pager = api_retry(self._client.list_runtime_versions)(
                request={"parent": self.parent}
            )
            return sorted(rv.version for rv in pager)

    def operation_error(self, op_name: str) -> tuple[int, str] | None:
        """(code, message) when the operation finished with an error, else None."""
        with api_errors(f"operation {op_name.rsplit('/', 1)[-1]}"):
            op = api_retry(self._client.get_operation)(request={"name": op_name})
        if op.done and op.HasField("error") and op.error.code:
            return int(op.error.code), str(op.error.message)
        return None

    def wait_operation(self, op_name: str, *, timeout: float,
                       on_poll: Callable[[], None] | None = None) -> None:
        """Poll an operation until done, starting fast (the emulator) and backing off to 5 s."""
        deadline = time.monotonic() + timeout
        waits = backoff.delays(first=backoff.POLL_FIRST_S, cap=backoff.POLL_MAX_S)
        while True:
            with api_errors(f"operation {op_name.rsplit('/', 1)[-1]}"):
                op = api_retry(self._client.get_operation)(request={"name": op_name})
            if on_poll:
                on_poll()
            if op.done:
                if op.HasField("error") and op.error.code:
                    raise CloudError(f"operation failed: {op.error.message}",
                                     hint="see `tpuctl describe` for the node's state")
                return
            if time.monotonic() >= deadline:
                raise TimeoutExpired(f"operation did not finish within {timeout:.0f}s",
                                     hint="raise --timeout, or check the node later with "
                                     "`tpuctl describe`")
            time.sleep(min(next(waits), max(0.0, deadline - time.monotonic())))
