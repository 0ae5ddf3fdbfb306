"""What an emulated worker's "TPU" is doing, measured from the run's real use of this
machine: the emulated chips are CPU devices, so their duty cycle is the CPU time of the
worker's workload and their HBM is its memory.

The workload: every process marked as this worker's (`TPUCTL_EMULATOR_WORKER` in its
environment, set at login like the node's kill marker) that left the SSH session it was
started from (a run under `setsid nohup`, a background bootstrap), i.e. what would hold the
TPU on a real VM. The commands an SSH session is running right now (top.sh itself, `exec`)
are not counted. With no workload there is no metrics server to answer, as on a TPU VM where
libtpu serves its metrics only while a process uses the TPU.

Duty cycle of each chip = 100 × the workload's CPU seconds over the last interval ÷ (the
interval × chips), at most 100 (one busy core per chip reads 100%). HBM used of each chip =
the workload's resident memory ÷ chips; HBM total = the generation's HBM per chip.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

from tpuctl.emulator.processes import find_marked_pids

WORKER_ENV = "TPUCTL_EMULATOR_WORKER"
FRESH_S = 30.0  # a previous sample older than this is not an interval's start
MIN_WINDOW_S = 0.25  # without a recent sample, measure over this long
_HZ = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def marker(node_id: str, index: int) -> str:
    return f"{node_id}/{index}"


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(process group, utime + stime ticks, resident bytes) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[2]), int(fields[11]) + int(fields[12]), rss_pages * _PAGE


class WorkerUsage:
    """One worker's workload, sampled when its metrics are asked for (thread-safe: the
    metrics server answers from its own threads)."""

    def __init__(self, worker_marker: str, chips: int, hbm_per_chip: int,
                 session_groups: Callable[[], frozenset[int]]) -> None:
        self._marker = f"{WORKER_ENV}={worker_marker}".encode()
        self.chips = max(1, chips)
        self.hbm_per_chip = hbm_per_chip
        self._session_groups = session_groups
        self._lock = threading.Lock()
        self._last: tuple[float, dict[int, int]] | None = None

    def _sample(self) -> tuple[float, dict[int, int], int]:
        sessions = self._session_groups()
        ticks, rss = {}, 0
        for pid in find_marked_pids(self._marker):
            got = _stat(pid)
            if got is None or got[0] in sessions:
                continue
            ticks[pid] = got[1]
            rss += got[2]
        return time.monotonic(), ticks, rss

    def read(self) -> tuple[list[float], list[int]] | None:
        """(duty % per chip, HBM bytes used per chip), or None: no workload, no metrics."""
        with self._lock:
            now, ticks, rss = self._sample()
            if not ticks:
                self._last = None
                return None
            last = self._last
            if last is None or now - last[0] > FRESH_S:
                last = (now, ticks)
                time.sleep(MIN_WINDOW_S)
                now, ticks, rss = self._sample()
            # a process new since the last sample spent all its time in the interval
            spent = sum(max(0, t - last[1].get(pid, 0)) for pid, t in ticks.items())
            self._last = (now, ticks)
        seconds = max(now - last[0], 1e-3)
        duty = min(100.0, 100.0 * spent / _HZ / seconds / self.chips)
        return [round(duty, 2)] * self.chips, [rss // self.chips] * self.chips


def session_groups_of(pgids: set[int]) -> Callable[[], frozenset[int]]:
    """The live SSH sessions' process groups of a node (vms.VmNode.pgids), read safely from
    another thread."""
    def read() -> frozenset[int]:
        for _ in range(3):
            with contextlib.suppress(RuntimeError):  # changed size while copied
                return frozenset(pgids)
        return frozenset()
    return read
