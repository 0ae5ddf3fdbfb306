"""`create`: a task-named, tpuctl-managed TPU node with the right runtime, ready for SSH."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tpuctl import backoff
from tpuctl.accelerators import parse_accelerator
from tpuctl.capacity import Capacity
from tpuctl.cloud.base import Cloud
from tpuctl.errors import (
    CapacityError,
    CloudError,
    NotFoundError,
    PreemptedError,
    TimeoutExpired,
    UsageError,
)
from tpuctl.labels import MAX_SLICES
from tpuctl.model import (
    EXPIRES_LABEL,
    MANAGED_LABEL,
    MANAGED_VALUE,
    OWNER_LABEL,
    TASK_LABEL,
    NetworkSpec,
    NodeSpec,
    Slice,
)
from tpuctl.naming import (
    parse_duration,
    parse_labels,
    parse_tags,
    validate_network,
    validate_node_name,
    validate_subnetwork,
)
from tpuctl.ops.access import GONE_STATES, ensure_access, login_mode, ssh_key_metadata
from tpuctl.ops.owner import me
from tpuctl.ops.ports import Ports
from tpuctl.prices import Price, price_for
from tpuctl.vmoptions import VmOptions, check_disks

Progress = Callable[[str], None]


class CreateEvents:
    """What `create` reports while it works (a renderer overrides what it shows)."""

    def zone(self, zone: str) -> None:
        """Trying this zone now."""

    def state(self, state: str) -> None:
        """The node's (or queued resource's) state changed."""

    def no_capacity(self, zone: str, message: str, next_zone: str) -> None:
        """`zone` had no capacity; `next_zone` is tried next."""

    def price(self, price: Price) -> None:
        """What the node will cost an hour in the zone being tried, before any wait."""


@dataclass(frozen=True)
class CreateRequest:
    name: str
    accelerator_type: str
    runtime: str = "auto"
    spot: bool = False
    queued: bool = False
    labels: tuple[str, ...] = ()
    wait: bool = True
    timeout: float = 1800.0
    ttl: str | None = None  # e.g. "8h": labels an expiry that `tpuctl gc` acts on
    zones: tuple[str, ...] = ()  # tried in order, moving on only on a stockout; (): configured
    capacity: Capacity | None = None  # reserved, reservation, tier, queueing (tpuctl/capacity.py)
    vm: VmOptions = field(default_factory=VmOptions)  # service account, metadata, data disks
    slices: int = 1  # > 1: a multislice group of that many nodes, through one queued resource
    internal_ips: bool = False  # no external IPs (gcloud's --internal-ips)
    network: str | None = None
    subnetwork: str | None = None
    tags: tuple[str, ...] = ()  # network tags (--tags a,b: split here)

    @property
    def through_queue(self) -> bool:
        """Through a queued resource: asked for, or implied by a queued-only option."""
        return self.queued or self.slices > 1 or (
            self.capacity is not None and self.capacity.needs_queue)


@dataclass(frozen=True)
class CreateResult:
    slice: Slice
    created: bool  # False when an existing managed node with the same spec was reused
    seconds: float
    price: Price | None = None  # per hour, in the zone it landed in

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"node": self.slice.to_dict(), "created": self.created,
                                "seconds": round(self.seconds, 2)}
        if self.price is not None:
            d["price_per_hour"] = self.price.to_dict()
        return d


def parse_zones(text: str | None) -> tuple[str, ...]:
    """`--zone a,b,c`: the zones to try in order (an empty one is refused by validate)."""
    return tuple(z.strip() for z in text.split(",")) if text else ()


def validate_request(req: CreateRequest) -> tuple[NodeSpec, bool]:
    """Everything checkable without the API. Returns the spec and whether runtime is auto."""
    validate_node_name(req.name)
    accel = parse_accelerator(req.accelerator_type)
    labels = parse_labels(list(req.labels))
    labels.update({MANAGED_LABEL: MANAGED_VALUE, TASK_LABEL: req.name})
    if req.ttl:
        labels[EXPIRES_LABEL] = str(int(time.time() + parse_duration(req.ttl)))
    auto = req.runtime in ("", "auto")
    runtime = accel.default_runtime if auto else req.runtime
    if req.timeout <= 0:
        raise UsageError(f"invalid --timeout {req.timeout}",
                         hint="give a positive number of seconds")
    if any(not z for z in req.zones):
        raise UsageError(f"invalid --zone {','.join(req.zones)!r}: an empty zone",
                         hint="give zones separated by commas, e.g. us-east5-b,us-east5-a")
    cap = req.capacity or Capacity(spot=req.spot, queued=req.queued)
    if not 1 <= req.slices <= MAX_SLICES:
        raise UsageError(f"invalid --slices {req.slices}",
                         hint=f"give 1 (one node) to {MAX_SLICES} slices")
    check_disks(req.vm.data_disks, accel.hosts * req.slices, accel.name
                + (f" x {req.slices} slices" if req.slices > 1 else ""))
    network = NetworkSpec(
        external_ips=not req.internal_ips,
        network=validate_network(req.network) if req.network else None,
        subnetwork=validate_subnetwork(req.subnetwork) if req.subnetwork else None,
        tags=parse_tags(req.tags))
    return NodeSpec(name=req.name, accelerator_type=accel.name, runtime_version=runtime,
                    spot=req.spot or cap.spot, labels=labels, metadata=dict(req.vm.metadata),
                    description=f"tpuctl task {req.name}", capacity=cap, vm=req.vm,
                    slices=req.slices, network=network), auto


def check_runtime(cloud: Cloud, runtime: str, accelerator_type: str, auto: bool) -> None:
    available = cloud.list_runtime_versions()
    if runtime in available or not available:  # empty: the cloud cannot say (dry run)
        return
    gen = accelerator_type.split("-")[0]
    default = parse_accelerator(accelerator_type).default_runtime
    close = [v for v in available if gen.replace("litepod", "") in v or "base" in v]
    if default in available:  # v5p's own runtime (v2-alpha-tpuv5) has no "v5p" in its name
        close = [default, *(v for v in close if v != default)]
    close = close[:6]
    why = f"the default runtime for {accelerator_type}" if auto else "runtime"
    raise UsageError(
        f"{why} {runtime!r} is not offered in zone {cloud.zone}",
        hint=f"pass --runtime with one of: {', '.join(close or available[:6])}",
    )


def _reuse(cloud: Cloud, existing: Slice, spec: NodeSpec, auto_runtime: bool) -> None:
    if not existing.managed:
        raise UsageError(
            f"node {spec.name!r} already exists and is not managed by tpuctl",
            hint="choose another name; tpuctl never takes over nodes it did not create",
        )
    if existing.owner is not None and existing.owner != me(cloud):
        raise UsageError(
            f"node {spec.name!r} already exists and belongs to {existing.owner}",
            hint="choose another name; tpuctl never takes over another user's node",
        )
    diffs = []
    if existing.accelerator_type != spec.accelerator_type:
        diffs.append(f"type {existing.accelerator_type} (asked {spec.accelerator_type})")
    if not auto_runtime and existing.runtime_version != spec.runtime_version:
        diffs.append(f"runtime {existing.runtime_version} (asked {spec.runtime_version})")
    if existing.slices != spec.slices:
        diffs.append(f"{existing.slices} slice(s) (asked {spec.slices})")
    if existing.spot != spec.spot:
        diffs.append(f"spot={existing.spot} (asked spot={spec.spot})")
    elif existing.capacity in ("on-demand", "reserved") and not existing.queued_resource \
            and existing.capacity != spec.effective_capacity.kind:  # (a queued one: its tier)
        diffs.append(f"capacity {existing.capacity} (asked {spec.effective_capacity.kind})")
    if existing.workers:  # known once it has registered workers
        has_external = any(w.external_ip for w in existing.workers)
        if has_external != spec.network.external_ips:
            diffs.append("external IPs (asked --internal-ips)" if has_external
                         else "internal IPs only (asked external IPs)")
    if diffs:
        raise UsageError(
            f"node {spec.name!r} exists with a different spec: {', '.join(diffs)}",
            hint=f"delete it first (`tpuctl delete {spec.name} --yes`) or pick another name",
        )
    if existing.state in GONE_STATES:
        raise PreemptedError(
            f"node {spec.name!r} exists but is {existing.state}",
            hint=f"delete it (`tpuctl delete {spec.name} --yes`) and create it again",
        )
    if existing.state not in ("READY", "CREATING", "STARTING"):
        raise CloudError(f"node {spec.name!r} exists but is {existing.state}",
                         hint="wait for it, or delete it and create it again")


RESOURCE_EXHAUSTED = 8  # google.rpc.Code: how GCP's create operation reports a stockout


def _check_operation(cloud: Cloud, name: str, op: str | None) -> None:
    """A create that failed shows in its operation (a stockout is code 8), not in the node."""
    if op is None:
        return
    err = cloud.operation_error(op)
    if err is None:
        return
    code, message = err
    if code == RESOURCE_EXHAUSTED:
        raise CapacityError(f"no capacity for {name!r} in {cloud.zone}: {message[:200]}",
                         hint="try another zone (--zone), a smaller type, --spot, or --queued "
                         "to wait for capacity")
    raise CloudError(f"creating {name!r} failed (code {code}): {message[:200]}",
                     hint="see the message; `tpuctl describe` shows the node if it exists")


def _wait_ready(cloud: Cloud, name: str, deadline: float, progress: Progress,
                op: str | None = None, queued: bool = False) -> Slice:
    waits = backoff.delays(first=backoff.POLL_FIRST_S, cap=backoff.POLL_MAX_S)
    while True:
        try:
            sl = cloud.get_node(name)
            progress(sl.state)
            if sl.state == "READY":
                return sl
            if sl.state in GONE_STATES:
                raise PreemptedError(f"node {name!r} became {sl.state} while starting",
                                     hint="retry, or use another zone")
            _check_operation(cloud, name, op)
        except NotFoundError:
            _check_operation(cloud, name, op)
            state = "QUEUED"
            if queued:
                try:
                    qstate = cloud.queued_resource_state(name)
                    state = f"queued ({qstate})"
                except NotFoundError:
                    qstate = ""
                if qstate == "FAILED":  # past its valid-until, no such reservation, ...
                    why = cloud.queued_resource_error(name)
                    raise CapacityError(
                        f"queued resource {name!r} FAILED in {cloud.zone}"
                        + (f": {why[:300]}" if why else ""),
                        hint="check --reservation and --valid-until; the whole record: "
                        f"`gcloud compute tpus queued-resources describe {name} --zone "
                        f"{cloud.zone}`") from None
            progress(state)
        if time.monotonic() >= deadline:
            raise TimeoutExpired(f"node {name!r} was not READY in time",
                                 hint="raise --timeout; capacity may be short in this zone")
        time.sleep(next(waits))


def create(ports: Ports, req: CreateRequest, events: CreateEvents | None = None
           ) -> CreateResult:
    """The node in the first of `req.zones` (or the configured zone) that has capacity."""
    events = events or CreateEvents()
    validate_request(req)  # bad input fails before any configuration or API work
    zones = list(req.zones) or [ports.cloud.zone]
    for i, zone in enumerate(zones):
        here = ports.in_zone(zone) if req.zones else ports
        events.zone(zone)
        price = price_for(req.accelerator_type, here.cloud.zone,
                          req.spot or (req.capacity is not None and req.capacity.spot))
        if req.slices > 1:  # a multislice group: every slice
            price = replace(price, chips=price.chips * req.slices, amount=None
                            if price.amount is None else price.amount * req.slices)
        events.price(price)
        try:
            return replace(create_in_zone(here, req, events.state), price=price)
        except CapacityError as e:
            if i == len(zones) - 1:
                if len(zones) > 1:
                    raise CapacityError(f"{e.message} (tried {', '.join(zones)})",
                                        hint=e.hint) from None
                raise
            events.no_capacity(zone, e.message, zones[i + 1])
    raise AssertionError("unreachable: the last zone returns or raises")


def create_in_zone(ports: Ports, req: CreateRequest, progress: Progress = lambda s: None
                   ) -> CreateResult:
    cloud = ports.cloud
    t0 = time.monotonic()
    spec, auto = validate_request(req)
    deadline = t0 + req.timeout
    try:
        existing: Slice | None = cloud.get_node(spec.name)
    except NotFoundError:
        existing = None
    if existing is not None:
        _reuse(cloud, existing, spec, auto)
        progress(f"reusing {existing.state}")
        if req.wait:
            _wait_ready(cloud, spec.name, deadline, progress)
            existing = ensure_access(ports, spec.name,
                                     timeout=max(1.0, deadline - time.monotonic())).slice
        return CreateResult(existing, created=False, seconds=time.monotonic() - t0)

    check_runtime(cloud, spec.runtime_version, spec.accelerator_type, auto)
    # with OS Login on for the project, our key goes to the account's profile once the node
    # is READY (ensure_access), and `ssh-keys` is left alone (the VM options' metadata stays)
    oslogin, _ = login_mode(cloud, {})
    spec = replace(spec, metadata=dict(spec.metadata) if oslogin
                   else ssh_key_metadata(ports.local, spec.metadata),
                   labels={**spec.labels, OWNER_LABEL: me(cloud)})
    progress("REQUESTED")
    if req.through_queue:
        op = cloud.create_queued_resource(spec)
    else:
        op = cloud.create_node(spec)
    if not req.wait:
        sl = _get_or_placeholder(cloud, spec)
        return CreateResult(sl, created=True, seconds=time.monotonic() - t0)
    try:
        _wait_ready(cloud, spec.name, deadline, progress,
                    op=None if req.through_queue else op, queued=req.through_queue)
        sl = ensure_access(ports, spec.name, timeout=max(1.0, deadline - time.monotonic()),
                           fresh=True).slice
    except (KeyboardInterrupt, TimeoutExpired, PreemptedError, CloudError):
        _abandon(ports, spec.name, req.through_queue)
        raise
    from tpuctl.ops.ledgernotes import note_node

    note_node(ports, "create", sl)
    return CreateResult(sl, created=True, seconds=time.monotonic() - t0)


def _get_or_placeholder(cloud: Cloud, spec: NodeSpec) -> Slice:
    try:
        return cloud.get_node(spec.name)
    except NotFoundError:
        return Slice(name=spec.name, project=cloud.project, zone=cloud.zone,
                     accelerator_type=spec.accelerator_type,
                     runtime_version=spec.runtime_version, state="QUEUED", labels=spec.labels)


def _abandon(ports: Ports, name: str, queued: bool) -> None:
    """A node this command started but could not finish is deleted, never leaked."""
    cloud = ports.cloud
    ports.local.forget_slice(cloud, name)
    try:
        if queued:
            cloud.delete_queued_resource(name)
        else:
            cloud.delete_node(name)
    except Exception:  # best effort on the way out; the original error matters
        pass
