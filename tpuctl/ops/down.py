"""`down NAME`: stop the latest run, if the node can still run one, then delete the node.

The node must be a managed one of yours (`--any-owner`: another user's), checked before
anything touches it. A node that is gone, not READY, or has no run is deleted without a
word about stopping; any other failure to stop is reported and the node deleted anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpuctl.errors import Declined, NodeNotReady, NotFoundError, TpuctlError
from tpuctl.model import Slice
from tpuctl.naming import validate_node_name
from tpuctl.ops.launch import StopResult, stop_run
from tpuctl.ops.nodes import DeleteResult, check_deletable, delete, require_yes
from tpuctl.ops.ports import Ports
from tpuctl.ops.session import on_slice

STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class DownRequest:
    name: str
    yes: bool = False
    can_ask: bool = False
    any_owner: bool = False


@dataclass(frozen=True)
class DownResult:
    deleted: DeleteResult
    stopped: StopResult | None = None  # None: no run to stop, or the node could not run one
    stop_skipped: str | None = None  # why stopping failed (the node was deleted anyway)

    def to_dict(self) -> dict[str, object]:
        return self.deleted.to_dict()


class DownEvents:
    def confirm(self, sl: Slice) -> bool:
        """Asked when the request did not say `yes`: take this node down?"""
        return False

    def polling(self) -> None:
        """Once per poll of the delete operation."""


def down(ports: Ports, req: DownRequest, events: DownEvents | None = None) -> DownResult:
    events = events or DownEvents()
    validate_node_name(req.name)
    require_yes(req.yes, req.can_ask, f"take down {req.name!r}",
                f"run `tpuctl down {req.name} --yes`")
    sl = check_deletable(ports, req.name, any_owner=req.any_owner)  # before anything else
    if not req.yes and not events.confirm(sl):
        raise Declined(f"{req.name} not taken down", hint="nothing was changed")
    stopped, skipped = None, None
    try:
        stopped = on_slice(ports, req.name, lambda s: stop_run(s, None, grace=STOP_GRACE_S),
                           any_owner=req.any_owner)
    except (NotFoundError, NodeNotReady):
        pass  # no run, or a node that cannot run one: nothing to stop
    except TpuctlError as e:
        skipped = e.message
    deleted = delete(ports, sl, wait=True, on_poll=events.polling)
    return DownResult(deleted, stopped, skipped)
