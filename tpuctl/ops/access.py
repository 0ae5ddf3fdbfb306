"""Make sure this user can SSH to a node: our key in its metadata, its host keys pinned."""

from __future__ import annotations

import time

from tpuctl import sshkeys
from tpuctl.cloud.base import Cloud
from tpuctl.errors import NodeNotReady, PreemptedError, TimeoutExpired
from tpuctl.model import Slice
from tpuctl.ops.ports import Local, Ports
from tpuctl.ops.results import GONE_STATES
from tpuctl.workers.base import SshTarget

SSH_KEYS = "ssh-keys"


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
    if not sl.workers:
        raise NodeNotReady(f"node {sl.name!r} reports no workers (no network endpoints)",
                           hint="the node is not usable; delete and recreate it")


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
                  any_owner: bool = False) -> Slice:
    """A READY slice with our key authorized and every worker's host key pinned locally.

    Adding our key changes the node: only on a managed node of ours (or one without an owner
    label, or with `any_owner`); a node that already authorizes our key needs no change."""
    cloud, local = ports.cloud, ports.local
    sl = cloud.get_node(name)
    require_ready(sl)
    wanted = ssh_key_metadata(local, sl.metadata)
    if wanted != sl.metadata:
        from tpuctl.ops.owner import check_ours

        check_ours(cloud, sl, doing="add your SSH key to", any_owner=any_owner,
                   hint="ask its owner to add your key (~/.tpuctl/ssh/tpuctl_ed25519.pub) to "
                   "its ssh-keys metadata, or use a node of your own")
        op = cloud.set_metadata(name, wanted)
        cloud.wait_operation(op, timeout=timeout)
        sl = cloud.get_node(name)
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
    local.cache_slice(cloud, sl, public_key=local.ensure_key()[1])
    return sl


def cached_access(ports: Ports, name: str, *, any_owner: bool = False) -> tuple[Slice, bool]:
    """`ensure_access`, answered from the worker cache while its entry is fresh (no API call,
    no google-cloud import); the flag says which. A cached list must be refreshed from the
    API when a worker cannot be reached with it (`SliceSession.refresh`)."""
    cached = ports.local.cached_slice(ports.cloud, name,
                                      public_key=ports.local.ensure_key()[1])
    if cached is not None:
        return cached, True
    return ensure_access(ports, name, any_owner=any_owner), False


def ssh_targets(local: Local, sl: Slice, indices: list[int] | None = None
                ) -> list[SshTarget]:
    user = local.username()
    chosen = sl.workers if indices is None else [sl.workers[i] for i in indices]
    return [SshTarget(w.index, w.ip, w.ssh_port, user, w.host_key) for w in chosen]
