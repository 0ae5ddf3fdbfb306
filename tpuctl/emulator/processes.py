"""The processes an emulated node started, found and killed by their marker.

Every process a node starts carries `TPUCTL_EMULATOR_NODE=<id>` in its environment, which is
how `kill_node_processes` finds the ones that daemonized (never by name: all emulated workers
share one kernel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

log = logging.getLogger(__name__)

NODE_ENV = "TPUCTL_EMULATOR_NODE"


def node_marker(node_id: str, state_dir: object) -> str:
    """The kill marker's value: the node's id *and* its emulator's state dir, so that two
    emulators on one machine (two users, two CI jobs, a test beside a demo) that both have a
    node `quickstart` never kill, or measure, each other's processes."""
    return f"{node_id}@{state_dir}"


def find_marked_pids(marker: bytes) -> list[int]:
    """Pids whose exec-time environment holds exactly `marker` (e.g. b"TPUCTL_EMULATOR_NODE=x").

    Zombies and processes of other users have unreadable/empty environ and are skipped.
    """
    me = os.getpid()
    uid = os.getuid()
    found: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if marker in data.split(b"\0"):
            found.append(int(name))
    return found


def group_is_marked(pgid: int, marker: bytes) -> bool:
    """Does a live member of process group `pgid` carry `marker` in its environment?"""
    for pid in find_marked_pids(marker):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid:
                return True
    return False


def groups_of(pids: list[int]) -> set[int]:
    """The process groups of `pids`, never the emulator's own."""
    groups = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    groups.discard(os.getpgid(0))
    return groups


def live_groups(groups: set[int]) -> set[int]:
    """Those of `groups` that still have a live (non-zombie) member."""
    live: set[int] = set()
    if not groups:
        return live
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:
                live.add(int(fields[2]))
    return live


def send_signal(pid: int, sig: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


async def kill_node_processes(node_marker: str, pgids: set[int] | None, grace: float) -> None:
    """SIGTERM everything marked with the node's id (and the live process groups `pgids` of
    its sessions, a set the caller keeps current), SIGKILL what remains after `grace`.

    Rescans each round, so children forked meanwhile are caught too.
    """
    marker = f"{NODE_ENV}={node_marker}".encode()
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    groups: set[int] = set()  # process groups of marked processes, remembered
    while True:
        if pgids is not None:
            for pgid in list(pgids):
                send_signal(pgid, sig, group=True)
        pids = await asyncio.to_thread(find_marked_pids, marker)
        # a member whose environment no longer shows the marker (a process that retitles
        # itself with setproctitle, as sglang-jax's schedulers do) goes with its group
        groups = await asyncio.to_thread(live_groups, groups | groups_of(pids))
        if not pids and not pgids and not groups:
            return
        for pgid in groups:
            send_signal(pgid, sig, group=True)
        for pid in pids:
            send_signal(pid, sig)
            if sig == signal.SIGTERM:
                send_signal(pid, signal.SIGCONT)
        if sig == signal.SIGTERM and time.monotonic() >= deadline:
            sig = signal.SIGKILL
            continue
        if sig == signal.SIGKILL and time.monotonic() >= deadline + 5.0:
            log.warning("node %s: processes survive SIGKILL: %s", node_marker, pids)
            return
        await asyncio.sleep(0.05)
