"""Where emulated machines live on loopback: each node (and the bastion) owns one address
block 127.<slot>.0.0/16, split in two halves as a VPC and the internet are:

- internal addresses, 127.<slot>.<i // 250>.<i % 250 + 1> (third octet < 128): what
  `networkEndpoints[].ipAddress` shows, what workers bind and reach each other on;
- external addresses, 127.<slot>.<128 + i // 250>.<i % 250 + 1>: what
  `accessConfig.externalIp` shows (only for nodes created with external IPs, and only in the
  `cloud` network mode); the one address a client outside the emulated VPC may connect to.

One block per node keeps the two halves together, so what keeps blocks apart across the
emulators of one machine (`slots_elsewhere`: addresses.py's listening sockets) keeps both
halves apart too. Slot 255 is never
a node's: it holds the source address of the IAP stand-in (Google's IAP range
35.235.240.0/20 on GCP), which every emulated VPC lets in, as the firewall rule IAP needs does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

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
    127.S.x.y, addresses.py); every allocation goes through `allocate_slot`."""
    from tpuctl.emulator.addresses import slots_in_use

    return slots_in_use()


def allocate_slot(used: Collection[int]) -> int | None:
    """The lowest free slot (not in `used`, not another emulator's), None when all are."""
    taken = set(used) | slots_elsewhere()
    for slot in range(1, MAX_SLOTS + 1):
        if slot not in taken:
            return slot
    return None
