"""Make sure this user can SSH to a node: every worker registered, the login authorized
(our key in the node's `ssh-keys` metadata, or imported through OS Login), its host keys
pinned."""

from __future__ import annotations

import time
from dataclasses import replace

from tpuctl import backoff, sshkeys
from tpuctl.cloud.base import Cloud
from tpuctl.errors import CloudError, NodeNotReady, PreemptedError, TimeoutExpired
from tpuctl.model import Access, Login, Slice
from tpuctl.ops.ports import Local, Ports
from tpuctl.ops.results import GONE_STATES
from tpuctl.ops.route import ssh_targets
from tpuctl.ops.worker_cache import KEY_WAIT_S
from tpuctl.workers.base import SshTarget

SSH_KEYS = "ssh-keys"
OSLOGIN = "enable-oslogin"


def ssh_key_metadata(local: Local, existing: dict[str, str]) -> dict[str, str]:
    """The node metadata with this user's tpuctl key added (GCP `user:key` lines)."""
    _, pub = local.ensure_key()
    entry = sshkeys.ssh_keys_entry(local.username(), pub)
    merged = dict(existing)
    merged[SSH_KEYS] = sshkeys.merge_ssh_keys(existing.get(SSH_KEYS, ""), entry)
    return merged




def require_ready(sl: Slice) -> None:
    if sl.state in GONE_STATES:
        raise PreemptedError(
            f"node {sl.name!r} is {sl.state}: its workers and runs are gone",
            hint=f"`tpuctl down {sl.name} --yes`, then `tpuctl up` (or `tpuctl create`) again")
    if sl.state != "READY":
        raise NodeNotReady(f"node {sl.name!r} is {sl.state}, not READY",
                           hint="wait for it (`tpuctl describe`) or recreate it")


def expected_workers(sl: Slice) -> int | None:
    """How many hosts the node's type has (None for a type tpuctl does not know)."""
    from tpuctl.accelerators import parse_accelerator
    from tpuctl.errors import UsageError

    try:  # a multislice group (cloud/groups.py) holds every slice's workers
        return parse_accelerator(sl.accelerator_type).hosts * max(1, sl.slices)
    except UsageError:
        return None


def missing_workers(sl: Slice) -> list[int]:
    """Worker indices the node's type has and its network endpoints do not (yet)."""
    want = expected_workers(sl)
    have = {w.index for w in sl.workers}
    if want is None:
        return [] if have else [0]
    return [i for i in range(want) if i not in have]


def registered(cloud: Cloud, name: str, *, wait: float) -> Slice:
    """The READY node once every worker of its type has registered (a network endpoint
    with an address), polling up to `wait` seconds; then NodeNotReady naming the missing
    ones: tpuctl never runs on a partial slice (a job would hang in jax.distributed)."""
    sl = cloud.get_node(name)
    require_ready(sl)
    deadline = time.monotonic() + wait
    waits = backoff.delays(first=0.2, cap=2.0)
    while missing_workers(sl) and time.monotonic() < deadline:
        time.sleep(min(next(waits), max(0.0, deadline - time.monotonic())))
        sl = cloud.get_node(name)
        require_ready(sl)
    missing = missing_workers(sl)
    if not missing:
        return sl
    want = expected_workers(sl) or 0
    if not sl.workers:
        raise NodeNotReady(f"node {name!r} reports no workers (no network endpoints) after "
                           f"{wait:g}s", hint="the node is not usable; delete and recreate it "
                           f"(`tpuctl down {name} --yes`)")
    raise NodeNotReady(
        f"node {name!r} has {len(sl.workers)} of {want} workers registered after {wait:g}s "
        f"(missing: {', '.join(f'w{i}' for i in missing)}): refusing a partial slice",
        hint=f"`tpuctl doctor {name}` shows each worker; wait and retry, or recreate the node "
        f"(`tpuctl down {name} --yes`)")


def login_mode(cloud: Cloud, node_metadata: dict[str, str]) -> tuple[bool, str]:
    """(OS Login?, why): `enable-oslogin` in the node's metadata, else in the project's
    (the node's wins, FALSE included), as the guest agent decides."""
    def true(v: str) -> bool:
        return v.strip().lower() in ("true", "1", "yes", "y")

    if OSLOGIN in node_metadata:
        value = node_metadata[OSLOGIN]
        return true(value), f"{OSLOGIN}={value} in the node's metadata"
    try:
        project = cloud.project_metadata()
    except CloudError as e:  # no compute.projects.get: the node's metadata decides alone
        return False, f"project metadata unreadable ({e.message[:120]})"
    if OSLOGIN in project:
        value = project[OSLOGIN]
        return true(value), f"{OSLOGIN}={value} in project {cloud.project}'s metadata"
    return False, f"no {OSLOGIN} in the node's or project {cloud.project}'s metadata"


def raise_if_gone(cloud: Cloud, name: str, *, context: str, hint: str) -> None:
    """PreemptedError (exit 6) when a lost worker is explained by the node being preempted or
    terminated; nothing when the node is fine or the API cannot say (that is not news)."""
    try:
        node = cloud.get_node(name)
    except Exception:  # the caller's own error is the one to report
        return
    if node.state in GONE_STATES:
        raise PreemptedError(f"node {name!r} was {node.state.lower()} {context}", hint=hint)


def ensure_access(ports: Ports, name: str, *, timeout: float = 300.0,
                  any_owner: bool = False, fresh: bool = False,
                  partial: bool = False, keys_changed_at: float = 0.0) -> Access:
    """A READY node with every worker registered, this user's login authorized and every
    worker's host key pinned locally.

    OS Login nodes: our key is imported into the account's profile and `ssh-keys` is left
    alone. Others: our key goes into the node's metadata, which changes the node, so only
    on a managed node of ours (or one without an owner label, or with `any_owner`); a node
    that already authorizes it needs no change. `fresh`: the node was just made with our
    key (its guest agent is still applying it). `partial`: accept a node whose workers have
    not all registered (doctor reports them). `keys_changed_at`: a key change the caller
    knows of (a session re-reading a node whose cache entry it dropped)."""
    cloud, local = ports.cloud, ports.local
    wait = 0.0 if partial else min(ports.worker_wait, timeout)
    sl = registered(cloud, name, wait=wait) if not partial else cloud.get_node(name)
    require_ready(sl)
    _, pub = local.ensure_key()
    oslogin, why = login_mode(cloud, sl.metadata)
    changed = fresh
    if oslogin:
        user, imported = cloud.oslogin_user(pub)
        changed = changed or imported
        login = Login(user, "oslogin", why)
    else:
        wanted = ssh_key_metadata(local, sl.metadata)
        if wanted != sl.metadata:
            from tpuctl.ops.owner import check_ours

            check_ours(cloud, sl, doing="add your SSH key to", any_owner=any_owner,
                       hint="ask its owner to add your key (~/.tpuctl/ssh/tpuctl_ed25519.pub) "
                       "to its ssh-keys metadata, or use a node of your own")
            op = cloud.set_metadata(name, wanted)
            cloud.wait_operation(op, timeout=timeout)
            sl = cloud.get_node(name)
            changed = True
        login = Login(local.username(), "metadata", why)
    deadline = time.monotonic() + timeout
    while any(w.host_key is None for w in sl.workers):
        # guest attributes appear a little after READY on GCP: wait for them, bounded
        if time.monotonic() > deadline:
            missing = [w.index for w in sl.workers if w.host_key is None]
            raise TimeoutExpired(f"workers {missing} of {name!r} published no SSH host key",
                                 hint="retry in a minute; the guest agent may still be starting")
        time.sleep(1.0)
        sl = cloud.get_node(name)
    local.pin_host_keys(sl)
    since = time.time() if changed else max(keys_changed_at, local.key_change(cloud, name))
    access = Access(sl, replace(login, keys_changed_at=since))
    if not missing_workers(sl):  # a partial list must never answer a later command
        local.cache_access(cloud, access, public_key=pub, targets=_targets(ports, access))
    return access


def _targets(ports: Ports, access: Access) -> list[SshTarget]:
    """The SSH targets this command's way in makes of the node, kept with its cache entry
    for the fast path (worker_cache.fast_targets); none when no worker is reachable this
    way (the command itself reports that)."""
    from tpuctl.errors import TpuctlError

    try:
        return ssh_targets(access.slice, access.login.user, ports.route)
    except TpuctlError:
        return []


def cached_access(ports: Ports, name: str, *, any_owner: bool = False) -> tuple[Access, bool]:
    """`ensure_access`, answered from the worker cache while its entry is fresh (no API call,
    no google-cloud import); the flag says which. A cached list must be refreshed from the
    API when a worker cannot be reached with it (`SliceSession.refresh`)."""
    cached = ports.local.cached_access(ports.cloud, name,
                                       public_key=ports.local.ensure_key()[1])
    if cached is not None and not missing_workers(cached.slice):
        return cached, True
    return ensure_access(ports, name, any_owner=any_owner), False


def keys_settling(login: Login, now: float | None = None) -> float:
    """Seconds left in which a refused login is the guest agent still applying a key
    tpuctl changed (0: none)."""
    if not login.keys_changed_at:
        return 0.0
    return max(0.0, login.keys_changed_at + KEY_WAIT_S - (time.time() if now is None else now))
