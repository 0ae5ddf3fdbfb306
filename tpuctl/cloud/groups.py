"""Multislice groups: `create NAME --slices N` makes one queued resource NAME whose node spec
asks for N nodes `NAME-0` .. `NAME-(N-1)` (multisliceParams). Every command then names the
group NAME: this Cloud decorator answers `get_node(NAME)` with one Slice holding every
slice's workers in order (global index = slice x hosts per slice + worker), so sessions,
`launch`'s JAX process ids, host-key pinning and deletion work on the group unchanged.
Light: no google-cloud import (the adapter below it is lazy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tpuctl.cloud.base import Cloud, WrappedCloud
from tpuctl.errors import NotFoundError
from tpuctl.labels import MAX_SLICES
from tpuctl.model import NodeSpec, Slice

GONE = ("PREEMPTED", "TERMINATED")


def group_of(sl: Slice) -> str | None:
    """The group NAME `sl` is a slice of: its queued resource is NAME and it is `NAME-i`
    (a node merely called NAME-0, or one a queued resource made alone, is no group's)."""
    qr = sl.queued_resource.rsplit("/queuedResources/", 1)
    if len(qr) != 2 or not sl.name.startswith(qr[1] + "-"):
        return None
    return qr[1] if sl.name[len(qr[1]) + 1:].isdigit() else None


def merge(name: str, members: list[Slice], queued_state: str) -> Slice:
    """The group as one Slice: the first slice's facts, every slice's workers, the state
    that matters (a slice gone makes the group gone: its job cannot go on)."""
    first = members[0]
    hosts = max(len(m.workers) for m in members) if members else 0
    workers = tuple(replace(w, index=s * hosts + w.index)
                    for s, m in enumerate(members) for w in m.workers)
    states = [m.state for m in members]
    state = next((s for s in states if s in GONE), None)
    if state is None and queued_state in ("SUSPENDING", "SUSPENDED"):
        state = "PREEMPTED"  # a slice was deleted or preempted and is gone
    if state is None:
        state = next((s for s in states if s != "READY"), None) or (
            "READY" if queued_state in ("ACTIVE", "") else "CREATING")
    return replace(first, name=name, state=state, workers=workers, slices=len(members))


def change_of(own: dict[str, str], shown: dict[str, str], wanted: dict[str, str]
              ) -> dict[str, str]:
    """A slice's new metadata: the change from what the group showed (its first slice's) to
    `wanted`, applied to the slice's own; `ssh-keys` lines are added, never replaced (each
    slice keeps the keys it has)."""
    out = dict(own)
    for key, value in wanted.items():
        if shown.get(key) == value:
            continue
        if key == "ssh-keys":
            have = out.get(key, "").splitlines()
            old = set(shown.get(key, "").splitlines())
            out[key] = "\n".join(have + [ln for ln in value.splitlines()
                                          if ln and ln not in old and ln not in have])
        else:
            out[key] = value
    for key in shown.keys() - wanted.keys():
        out.pop(key, None)
    return out


class GroupCloud(WrappedCloud):
    """The Cloud port, with multislice groups addressed by their queued resource's name."""

    def __init__(self, inner: Cloud) -> None:
        self._inner = inner

    def in_zone(self, zone: str) -> Cloud:
        return GroupCloud(self._inner.in_zone(zone))

    def __getattr__(self, attr: str) -> Any:  # every other verb, unchanged
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._inner, attr)

    def _members(self, name: str) -> list[Slice]:
        """The slices of group `name`, in order; [] when there is no such group."""
        try:
            first = self._inner.get_node(f"{name}-0")
        except NotFoundError:
            return []
        if group_of(first) != name:
            return []  # a node that happens to be called NAME-0
        out = [first]
        for i in range(1, MAX_SLICES):
            try:
                out.append(self._inner.get_node(f"{name}-{i}"))
            except NotFoundError:
                break
        return out

    def group(self, name: str) -> tuple[Slice, list[Slice]] | None:
        members = self._members(name)
        if not members:
            return None
        try:
            qstate = self._inner.queued_resource_state(name)
        except NotFoundError:
            qstate = ""
        return merge(name, members, qstate), members

    def get_node(self, name: str) -> Slice:
        try:
            return self._inner.get_node(name)
        except NotFoundError:
            found = self.group(name)
            if found is None:
                raise
            return found[0]

    def set_metadata(self, name: str, metadata: dict[str, str]) -> str:
        """On a group: every slice gets the keys (each keeps its own other metadata)."""
        try:
            return self._inner.set_metadata(name, metadata)
        except NotFoundError:
            found = self.group(name)
            if found is None:
                raise
        first = found[1][0].metadata  # what the group showed (ensure_access built on it)
        ops = [self._inner.set_metadata(m.name, change_of(m.metadata, first, metadata))
               for m in found[1]]
        for op in ops[:-1]:
            self._inner.wait_operation(op, timeout=300)
        return ops[-1]

    def delete_node(self, name: str) -> str:
        try:
            return self._inner.delete_node(name)
        except NotFoundError:
            if self.group(name) is None:
                raise
            return self._inner.delete_queued_resource(name)

    def create_queued_resource(self, spec: NodeSpec) -> str:
        return self._inner.create_queued_resource(spec)

    def wait_operation(self, op_name: str, *, timeout: float,
                       on_poll: Callable[[], None] | None = None) -> None:
        self._inner.wait_operation(op_name, timeout=timeout, on_poll=on_poll)


MEGASCALE_PORT = 8080  # what a multislice TPU VM's tpu-env says (docs/emulator.md)


def megascale_env(sl: Slice, index: int) -> dict[str, str]:
    """The variables a multislice job reads on worker `index` (global), as a multislice TPU
    VM's tpu-env sets them: the coordinator is slice 0's worker 0."""
    slice_id, _ = worker_of(sl, index)
    return {"MEGASCALE_COORDINATOR_ADDRESS": f"{sl.workers[0].ip}:{MEGASCALE_PORT}",
            "MEGASCALE_NUM_SLICES": str(sl.slices), "MEGASCALE_SLICE_ID": str(slice_id),
            "MEGASCALE_PORT": str(MEGASCALE_PORT), "TPUCTL_SLICE_ID": str(slice_id)}


def worker_label(sl: Slice | None, index: int) -> str:
    """`w3`, or `s1w3` in a multislice group (tpuctl/labels.py)."""
    from tpuctl import labels

    return labels.worker_label(1 if sl is None else sl.slices,
                               0 if sl is None else len(sl.workers), index)


def note_session(sl: Slice) -> None:
    """A session opened on `sl` (ops/session.py): label its workers' lines accordingly (the
    group this command works on: one per command)."""
    from tpuctl import labels

    labels.note(sl.slices, len(sl.workers))


def label(index: int) -> str:
    from tpuctl import labels

    return labels.label(index)


def worker_of(sl: Slice, index: int) -> tuple[int, int]:
    """(slice, worker within it) of a global worker index."""
    hosts = len(sl.workers) // max(1, sl.slices)
    return (index // hosts, index % hosts) if sl.slices > 1 and hosts else (0, index)


def global_index(sl: Slice, slice_: int, worker: int) -> int:
    hosts = len(sl.workers) // max(1, sl.slices)
    return slice_ * hosts + worker

