"""gather_or_cancel: an exception in one branch leaves no other branch running."""

from __future__ import annotations

import asyncio

import pytest

from tpuctl.aio import gather_or_cancel


def test_results_in_order_when_all_succeed() -> None:
    async def val(x: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return x

    assert asyncio.run(gather_or_cancel([val(1, 0.02), val(2, 0.0)])) == [1, 2]


def test_one_failure_cancels_and_awaits_the_others() -> None:
    finished: list[str] = []

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("preempted")

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            finished.append("cleaned up")  # runs before gather_or_cancel returns

    async def main() -> set[asyncio.Task[object]]:
        with pytest.raises(RuntimeError, match="preempted"):
            await gather_or_cancel([slow(), boom(), slow()])
        assert finished == ["cleaned up", "cleaned up"]
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(main()) == set()  # nothing left behind
