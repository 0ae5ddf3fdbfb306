"""asyncio helpers: fan-outs that never leave tasks running behind an exception."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but when one raises (a preempted node, Ctrl-C) the others are
    cancelled and awaited before the exception propagates: no task is left to finish, or
    fail, after the command has already reported (Python 3.10 has no TaskGroup)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        raise
