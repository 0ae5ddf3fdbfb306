"""The waits between polls and retries, written once: exponential, capped.

(tenacity's declarative policies in cloud/retry.py, workers/ssh.py and ops/bootstrap.py add
jitter for retries many clients make at once; these are one command's own polls.)
"""

from __future__ import annotations

from collections.abc import Iterator


def delay(attempt: int, *, first: float, cap: float, factor: float = 2.0) -> float:
    """The wait before retry number `attempt` (1, 2, ...): first, first*factor, ..., cap."""
    wait = first
    for _ in range(attempt - 1):
        wait *= factor
        if wait >= cap:  # (and no float overflow however long a wait goes on)
            break
    return min(wait, cap)


def delays(*, first: float, cap: float, factor: float = 1.5) -> Iterator[float]:
    """Endless waits between polls: first, first*factor, ... then cap, cap, ..."""
    wait = first
    while True:
        yield min(wait, cap)
        wait = min(wait * factor, cap)


# Polling a node or an operation: fast at first (the emulator answers in well under a
# second), then every 5 s (a real node takes minutes).
POLL_FIRST_S = 0.2
POLL_MAX_S = 5.0
