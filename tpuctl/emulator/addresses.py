"""Loopback address blocks other emulators on this machine already use.

Each emulator numbers its nodes' slots from 1, and a slot is an address block (127.<slot>.x.y),
so two emulators on one machine (two users, two test runs) would hand their nodes the same
worker addresses, and servers that bind a worker's address (sglang-jax ranks on port 30000)
would collide across them. On GCP two slices never share an address: a new node takes a slot
no listening socket on this machine uses yet.
"""

from __future__ import annotations

from pathlib import Path

_LISTEN = "0A"  # TCP state in /proc/net/tcp


def slots_in_use(table: Path = Path("/proc/net/tcp")) -> set[int]:
    """Second octets of the 127.S.x.y addresses (S > 0) with a listening TCP socket."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return set()
    used: set[int] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN:
            continue
        try:
            addr = bytes.fromhex(fields[1].split(":")[0])[::-1]  # little-endian IPv4
        except ValueError:
            continue
        if len(addr) == 4 and addr[0] == 127 and addr[1] != 0:
            used.add(addr[1])
    return used
