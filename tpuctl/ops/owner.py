"""Whose node is it: the owner label `create` sets, and the check every command that changes
a node makes first (delete, down, gc; adding this user's key to a node's metadata).

Unmanaged nodes (no `managed-by=tpuctl`) are never changed. Managed nodes of another owner
only with `--any-owner` (delete, down, gc). Nodes created before owners were recorded carry
no owner label: they keep working for whoever names them, `list` names them, and `gc`
collects them only with `--any-owner`.
"""

from __future__ import annotations

from tpuctl.cloud.base import Cloud
from tpuctl.errors import UsageError
from tpuctl.model import Slice
from tpuctl.naming import owner_label


def me(cloud: Cloud) -> str:
    """This user's owner label on `cloud`."""
    return owner_label(cloud.caller())


def check_ours(cloud: Cloud, sl: Slice, *, doing: str, any_owner: bool = False,
               hint: str | None = None) -> None:
    """Refuse, before any change, to `doing` a node that is not managed by tpuctl, or that
    belongs to someone else (unless `any_owner`). A node without an owner label passes."""
    if not sl.managed:
        raise UsageError(
            f"node {sl.name!r} is not managed by tpuctl (no label managed-by=tpuctl): "
            f"refusing to {doing} it",
            hint="tpuctl only changes nodes it created; use gcloud if you really mean to")
    if sl.owner is None or any_owner:
        return
    mine = me(cloud)
    if sl.owner != mine:
        raise UsageError(
            f"node {sl.name!r} belongs to {sl.owner}, not to you ({mine}): refusing to "
            f"{doing} it",
            hint=hint or f"pass --any-owner to {doing} another owner's node")
