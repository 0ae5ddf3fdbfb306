"""Where emulated machines live on loopback: each node (and the bastion) owns one address
block 127.<slot>.0.0/16, split in two halves as a VPC and the internet are:

- internal addresses, 127.<slot>.<i // 250>.<i % 250 + 1> (third octet < 128): what
  `networkEndpoints[].ipAddress` shows, what workers bind and reach each other on;
- external addresses, 127.<slot>.<128 + i // 250>.<i % 250 + 1>: what
  `accessConfig.externalIp` shows (only for nodes created with external IPs, and only in the
  `cloud` network mode); the one address a client outside the emulated VPC may connect to.

One block per node keeps the two halves together, so what keeps blocks apart across the
emulators of one machine keeps both halves apart too: a slot is claimed machine-wide the moment
it is allocated (`SlotClaims`: an abstract unix socket per slot, gone with its process), long
before its workers listen, and blocks with listening sockets (`slots_elsewhere`: addresses.py)
are skipped as well. Slot 255 is never
a node's: it holds the source address of the IAP stand-in (Google's IAP range
35.235.240.0/20 on GCP), which every emulated VPC lets in, as the firewall rule IAP needs does.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection, Iterable

MAX_SLOTS = 254
WORKERS_PER_OCTET = 250
EXTERNAL_OFFSET = 128  # third octet of a block's first external address
MAX_WORKERS = EXTERNAL_OFFSET * WORKERS_PER_OCTET  # per node, in each half
IAP_SOURCE = "127.255.240.1"  # the IAP stand-in connects from here (see iap.py)


def _check(slot: int, index: int) -> None:
    if not 1 <= slot <= 255:
        raise ValueError(f"slot must be in 1..255 (127.0.x.x would overlap localhost), got {slot}")
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"worker index out of range: {index}")


def internal_ip(slot: int, index: int) -> str:
    """The VPC-internal address of worker `index` of the node in `slot`."""
    _check(slot, index)
    return f"127.{slot}.{index // WORKERS_PER_OCTET}.{index % WORKERS_PER_OCTET + 1}"


def external_ip(slot: int, index: int) -> str:
    """The external address of worker `index` of the node in `slot` (cloud network mode)."""
    _check(slot, index)
    octet = EXTERNAL_OFFSET + index // WORKERS_PER_OCTET
    return f"127.{slot}.{octet}.{index % WORKERS_PER_OCTET + 1}"


def split(ip: str) -> tuple[int, int, bool] | None:
    """(slot, worker index, external?) of an emulated address; None for any other address."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return None
    a, slot, third, fourth = addr.packed
    if a != 127 or not 1 <= slot <= MAX_SLOTS or not 1 <= fourth <= WORKERS_PER_OCTET:
        return None
    external = third >= EXTERNAL_OFFSET
    index = (third - (EXTERNAL_OFFSET if external else 0)) * WORKERS_PER_OCTET + fourth - 1
    return slot, index, external


def slots_elsewhere() -> set[int]:
    """Address blocks other emulators on this machine already use (listening sockets on
    127.S.x.y, addresses.py); every allocation goes through `SlotClaims.allocate`."""
    from tpuctl.emulator.addresses import slots_in_use

    return slots_in_use()


class SlotClaims:
    """The slots one emulator holds, claimed machine-wide. Two emulators creating nodes at the
    same moment (two users, two CI jobs, parallel test workers) would both see a block without
    listening sockets and pick it: its workers listen only seconds later, after the create
    delay. A claim is an abstract unix socket `tpuctl-emulator-slot-S` bound by the emulator
    process: binding it is atomic, any user's emulator sees it, and it is gone when the
    process is, however it ends."""

    def __init__(self) -> None:
        self._held: dict[int, socket.socket] = {}

    @property
    def held(self) -> set[int]:
        return set(self._held)

    def claim(self, slot: int) -> bool:
        """Hold `slot` for this emulator; False when another process holds it."""
        if slot in self._held:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"\0tpuctl-emulator-slot-{slot}")
        except OSError:
            sock.close()
            return False
        self._held[slot] = sock
        return True

    def keep_only(self, used: Iterable[int]) -> None:
        """Let go of the slots no node or bastion of this emulator uses any more."""
        keep = set(used)
        for slot in [s for s in self._held if s not in keep]:
            self._held.pop(slot).close()

    def allocate(self, used: Collection[int]) -> int | None:
        """The lowest slot free machine-wide (not in `used`, not another emulator's), now
        claimed; None when all are taken."""
        self.keep_only(used)
        taken = set(used) | slots_elsewhere()
        for slot in range(1, MAX_SLOTS + 1):
            if slot not in taken and self.claim(slot):
                return slot
        return None

    def close(self) -> None:
        self.keep_only(())
