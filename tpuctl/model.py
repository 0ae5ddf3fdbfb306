"""The data operations take and return: never raw API objects or strings parsed from a shell."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tpuctl.capacity import Capacity
from tpuctl.defaults import DEFAULT_SERVE_PORT as DEFAULT_SERVE_PORT  # re-exported
from tpuctl.vmoptions import VmOptions

MANAGED_LABEL = "managed-by"
MANAGED_VALUE = "tpuctl"
TASK_LABEL = "tpuctl-task"
EXPIRES_LABEL = "tpuctl-expires"  # unix seconds after which `tpuctl gc` may delete the node
OWNER_LABEL = "tpuctl-owner"  # who created it (naming.owner_label): delete/down/gc are theirs


@dataclass(frozen=True)
class Worker:
    """One host of a slice, as reachable over SSH."""

    index: int
    ip: str  # the VPC-internal address: what workers use among themselves (JAX, sglang-jax)
    ssh_port: int = 22
    host_key: str | None = None  # "ssh-ed25519 AAAA..." from guest attributes, when published
    external_ip: str | None = None  # only on nodes created with external IPs
    hostname: str | None = None  # the VM's instance name (guest attribute), what IAP takes


@dataclass(frozen=True)
class Slice:
    """A TPU node as tpuctl sees it."""

    name: str
    project: str
    zone: str
    accelerator_type: str
    runtime_version: str
    state: str  # CREATING, READY, STOPPED, PREEMPTED, ...
    health: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    workers: tuple[Worker, ...] = ()
    spot: bool = False
    create_time: str = ""
    queued_resource: str = ""  # full name of the queued resource that owns this node, if any
    capacity: str = ""  # on-demand, spot, preemptible, reserved ("" when the cloud did not say)
    startup_script: bool = False  # its metadata has one (kept when metadata is not)
    slices: int = 1  # a multislice group (cloud/groups.py): its workers slice by slice

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_LABEL) == MANAGED_VALUE

    @property
    def owner(self) -> str | None:
        """The owner label; None for nodes created before tpuctl recorded owners."""
        return self.labels.get(OWNER_LABEL) or None

    @property
    def runs_startup_script(self) -> bool:
        """GCP's guest agent runs one on every worker at boot (ops/startup.py waits)."""
        return self.startup_script or bool(
            {"startup-script", "startup-script-url"} & self.metadata.keys())

    @property
    def capacity_type(self) -> str:
        """on-demand, spot, preemptible or reserved."""
        return self.capacity or ("spot" if self.spot else "on-demand")

    @property
    def full_name(self) -> str:
        return f"projects/{self.project}/locations/{self.zone}/nodes/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["workers"] = [
            {"index": w.index, "ip": w.ip, "external_ip": w.external_ip,
             "ssh_port": w.ssh_port} for w in self.workers
        ]
        d.pop("metadata", None)  # may hold ssh keys and user data; not part of the JSON contract
        d["managed"] = self.managed
        d["owner"] = self.owner
        d["capacity"] = self.capacity_type
        return d


@dataclass(frozen=True)
class NodeSpec:
    """What `create` asks for; compared field by field for idempotency."""

    name: str
    accelerator_type: str
    runtime_version: str
    spot: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    description: str = ""
    capacity: Capacity = field(default_factory=Capacity)  # besides `spot`: reserved, queue
    vm: VmOptions = field(default_factory=VmOptions)  # service account, data disks
    slices: int = 1  # > 1: one queued resource of that many nodes NAME-0.. (multislice)
    network: NetworkSpec = field(default_factory=lambda: NetworkSpec())

    @property
    def effective_capacity(self) -> Capacity:
        from dataclasses import replace

        return replace(self.capacity, spot=self.spot or self.capacity.spot)


@dataclass(frozen=True)
class NetworkSpec:
    """A node's network settings as `create` asks for them (gcloud's defaults: external IPs
    unless --internal-ips, the project's `default` network and subnetwork)."""

    external_ips: bool = True
    network: str | None = None  # a name, projects/P/global/networks/N or a full URL
    subnetwork: str | None = None  # likewise, .../regions/R/subnetworks/S
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Login:
    """How this user logs in to a node's workers, and why (`tpuctl config`, `doctor`)."""

    user: str  # the login name on the workers
    mode: str = "metadata"  # "metadata": a `user:key` line in ssh-keys; "oslogin": OS Login
    why: str = ""  # e.g. "enable-oslogin=TRUE in project p's metadata"
    # when tpuctl last changed what authorizes its key there (unix time; 0: not recently):
    # a refused login within a short window after it is the guest agent still applying it
    keys_changed_at: float = 0.0


@dataclass(frozen=True)
class Access:
    """A READY node this user can log in to: its workers (host keys pinned) and the login."""

    slice: Slice
    login: Login
