"""TPU reservations: capacity held for a project in one zone, which reserved nodes consume.

On GCP a reservation is bought through Google (the v2 API cannot create one; v2alpha1 only
lists them). Here an admin call makes one: `acceleratorType` and `count` say how many chips
of that generation it holds (`v6e-16` x 2 = 32 v6e chips). Every live node bound to it (a
create with `schedulingConfig.reserved`, or a queued resource's `reservationName`) uses its
chips until the node is deleted; nothing else is counted, so capacity comes back at once.
Saved with the emulator's state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tpuctl.accelerators import AcceleratorType
from tpuctl.emulator import catalog
from tpuctl.emulator.errors import already_exists, failed_precondition, invalid_argument, not_found
from tpuctl.emulator.persistence import Store
from tpuctl.emulator.resources import check_location, now_rfc3339

_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
MAX_COUNT = 100_000
# GCP's text when reserved capacity is short (the create operation fails with code 8)
INSUFFICIENT_MESSAGE = ("Insufficient reserved capacity. Contact customer support to increase "
                        "your reservation. [EID: 0x{eid}]")


def generation_of(accelerator_type: str) -> str:
    """`v6e-16` -> `v6e`: what a reservation's chips are."""
    return accelerator_type.rsplit("-", 1)[0]


def chips_of(accelerator_type: str, zone: str) -> int:
    acc = catalog.find_accelerator(zone, accelerator_type)
    return acc.chips if acc is not None else 0


@dataclass(frozen=True)
class Want:
    """One node that needs reserved chips."""

    node: str
    accelerator: AcceleratorType


class Reservations:
    """The reservations of a `Store`, and which live node uses which."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- admin calls ---------------------------------------------------------------------------
    def create(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        _, zone = check_location(parent)
        if not isinstance(body, dict):
            raise invalid_argument("the reservation must be a JSON object")
        rid = body.get("reservationId")
        if not isinstance(rid, str) or not _ID_RE.match(rid):
            raise invalid_argument(
                f"reservationId {rid!r} must be 1-63 lowercase letters, digits or hyphens, "
                "starting with a letter")
        acc_name = body.get("acceleratorType")
        acc = catalog.find_accelerator(zone, str(acc_name)) if isinstance(acc_name, str) else None
        if acc is None:
            raise invalid_argument(
                f"acceleratorType {acc_name!r} is not an accelerator type of zone {zone} "
                "(e.g. v6e-16)")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise invalid_argument(f"count {count!r} must be an integer in 1..{MAX_COUNT}")
        extra = sorted(set(body) - {"reservationId", "acceleratorType", "count"})
        if extra:
            raise invalid_argument(f"unknown field {extra[0]!r} (reservationId, "
                                   "acceleratorType, count)")
        name = f"{parent}/reservations/{rid}"
        if name in self._store.reservations:
            raise already_exists(name)
        self._store.reservations[name] = {
            "name": name, "acceleratorType": acc.name, "count": count,
            "generation": acc.generation.prefix, "chips": acc.chips * count,
            "createTime": now_rfc3339(),
        }
        self._store.save()
        return self.view(name)

    def list_reservations(self, parent: str) -> list[dict[str, Any]]:
        check_location(parent)
        return [self.view(n) for n in self._store.reservations if n.startswith(parent + "/")]

    def get(self, name: str) -> dict[str, Any]:
        check_location(name.rsplit("/reservations/", 1)[0])
        if name not in self._store.reservations:
            raise not_found(name)
        return self.view(name)

    def delete(self, name: str) -> None:
        self.get(name)
        users = self.users(name)
        if users:
            raise failed_precondition(
                f"Reservation {name} is in use by {', '.join(users)}; delete those nodes first")
        del self._store.reservations[name]
        self._store.save()

    # -- use -----------------------------------------------------------------------------------
    def users(self, name: str) -> list[str]:
        return [n for n, rec in self._store.nodes.items() if rec.reservation == name]

    def used(self, name: str) -> int:
        return sum(rec.hosts * rec.chips_per_host for rec in self._store.nodes.values()
                   if rec.reservation == name)

    def view(self, name: str) -> dict[str, Any]:
        res = self._store.reservations[name]
        used = self.used(name)
        return {**res, "usedChips": used, "freeChips": max(0, int(res["chips"]) - used),
                "users": self.users(name)}

    def exists(self, project: str, zone: str, reservation: str) -> bool:
        return f"projects/{project}/locations/{zone}/reservations/{reservation}" in (
            self._store.reservations)

    def assign(self, project: str, zone: str, reservation: str,
               wants: Sequence[Want]) -> dict[str, str] | None:
        """Reservations for every node of `wants` at once (node -> reservation name), from
        the named one or (`-`) any of the project's in the zone with free chips of each
        node's generation; None when they do not all fit. Nothing is taken yet: the caller
        binds the nodes (NodeRecord.reservation)."""
        prefix = f"projects/{project}/locations/{zone}/reservations/"
        names = [prefix + reservation] if reservation != "-" else sorted(
            n for n in self._store.reservations if n.startswith(prefix))
        free = {n: int(self._store.reservations[n]["chips"]) - self.used(n)
                for n in names if n in self._store.reservations}
        out: dict[str, str] = {}
        for want in wants:
            need = want.accelerator.chips
            gen = want.accelerator.generation.prefix
            pick = next((n for n in free if free[n] >= need
                         and self._store.reservations[n]["generation"] == gen), None)
            if pick is None:
                return None
            free[pick] -= need
            out[want.node] = pick
        return out
