"""start_eagerly: a coroutine runs in the caller until it first suspends, then in a task, unchanged."""

from __future__ import annotations

import asyncio

import pytest

from app.drain import start_eagerly


async def _no_wait(log: list[str]) -> str:
    log.append("ran")
    return "done"


def test_a_coroutine_that_never_suspends_completes_in_the_caller() -> None:
    async def main() -> None:
        log: list[str] = []
        assert start_eagerly(_no_wait(log)) is None
        assert log == ["ran"]  # before any await of the caller: nothing was scheduled

    asyncio.run(main())


def test_an_exception_before_the_first_suspension_raises_in_the_caller() -> None:
    async def fails() -> None:
        raise ValueError("bad record")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad record"):
            start_eagerly(fails())

    asyncio.run(main())


def test_a_suspended_coroutine_is_finished_by_a_task_with_its_result_and_order() -> None:
    async def main() -> None:
        log: list[str] = []
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(0)  # full: the next put suspends

        async def deliver(x: int) -> int:
            log.append(f"start {x}")
            await queue.put(x)
            await asyncio.sleep(0)  # a bare yield after the first suspension is passed through too
            log.append(f"put {x}")
            return x * 10

        rest = start_eagerly(deliver(7))
        assert rest is not None and log == ["start 7"]
        assert queue.get_nowait() == 0  # room again: the put can finish
        assert await rest == 70
        assert log == ["start 7", "put 7"] and queue.get_nowait() == 7

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    async def main() -> None:
        cleaned: list[str] = []
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def blocked() -> None:
            try:
                await never
            finally:
                cleaned.append("finally")

        rest = start_eagerly(blocked())
        assert rest is not None
        await asyncio.sleep(0)
        rest.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rest
        assert cleaned == ["finally"] and never.cancelled()

    asyncio.run(main())


def test_an_exception_after_suspension_reaches_the_awaiting_caller() -> None:
    async def main() -> None:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def later() -> None:
            if await gate > 0:
                raise RuntimeError("late failure")

        rest = start_eagerly(later())
        assert rest is not None
        gate.set_result(1)
        with pytest.raises(RuntimeError, match="late failure"):
            await rest

    asyncio.run(main())
