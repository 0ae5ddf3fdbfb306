"""Slots (127.S.x.y blocks) that another emulator's workers listen on are not handed out."""

from __future__ import annotations

import socket
from pathlib import Path

from tpuctl.emulator.addresses import slots_in_use


def test_a_listening_loopback_block_is_in_use_and_a_connected_one_is_not():
    listener = socket.socket()
    listener.bind(("127.213.0.7", 0))
    assert 213 not in slots_in_use()  # bound, not listening
    listener.listen()
    try:
        assert 213 in slots_in_use()
        assert 0 not in slots_in_use()  # 127.0.x.x (localhost) is never a slot
    finally:
        listener.close()
    assert 213 not in slots_in_use()


def test_an_unreadable_or_odd_table_means_nothing_in_use(tmp_path: Path):
    assert slots_in_use(tmp_path / "absent") == set()
    table = tmp_path / "tcp"
    table.write_text("  sl  local_address rem_address   st\n"
                     "   0: 0100007F:1F90 00000000:0000 0A\n"       # 127.0.0.1 listening
                     "   1: 0100057F:0016 00000000:0000 0A\n"       # 127.5.0.1 listening
                     "   2: 0100067F:0016 0100007F:9C40 01\n"       # 127.6.0.1 established
                     "   3: zz:0016 00000000:0000 0A\n   4: short\n")
    assert slots_in_use(table) == {5}
