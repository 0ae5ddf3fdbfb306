"""How a worker's lines are labelled: `w3`, or `s1w3` in a multislice group (its slice and its
worker within that slice). Light on purpose: cli/plain.py draws these labels for the fast path
too. The group a command works on is noted once, by its session (cloud/groups.py:note_session).
"""

from __future__ import annotations

# More slices than a group can have: `create --slices` refuses more, cloud/groups.py reads at
# most this many of a group's nodes, and `--worker sS...` refuses a larger S (workers/select.py).
MAX_SLICES = 256

# (slices, workers) of the multislice group this command works on; empty for one slice
_current: list[tuple[int, int]] = []


def note(slices: int, workers: int) -> None:
    _current[:] = [(slices, workers)] if slices > 1 else []


def worker_label(slices: int, workers: int, index: int) -> str:
    if slices <= 1:
        return f"w{index}"
    hosts = workers // max(1, slices)
    s, w = (index // hosts, index % hosts) if hosts else (0, index)
    return f"s{s}w{w}"


def label(index: int) -> str:
    return worker_label(*_current[0], index) if _current else f"w{index}"
