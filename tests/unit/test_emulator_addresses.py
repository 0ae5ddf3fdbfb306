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


def test_a_slot_claimed_by_another_process_is_skipped_until_that_process_is_gone():
    """Two emulators allocating at the same moment: the second never gets the first's block,
    though no worker listens on it yet; the claim goes with its process."""
    import subprocess
    import sys

    from tpuctl.emulator.addressing import SlotClaims

    mine = SlotClaims()
    try:
        first = mine.allocate(used=set())
        assert first is not None
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from tpuctl.emulator.addressing import SlotClaims\n"
             "c = SlotClaims(); s = c.allocate(set()); print(s, flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None
            theirs = int(holder.stdout.readline())
            assert theirs != first  # ours is claimed, though nothing listens on it
            assert not mine.claim(theirs)
            second = mine.allocate(used={first})
            assert second not in (first, theirs)
        finally:
            holder.communicate("")  # the holder ends: its claim is gone with it
        assert mine.claim(theirs)
        mine.keep_only({first})  # what no node uses any more is let go
        assert mine.held == {first}
    finally:
        mine.close()
    assert mine.held == set()
