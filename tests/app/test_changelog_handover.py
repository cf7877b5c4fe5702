"""The processor acks a batch only once its changelog records have left Faust's producer buffer.

The buffer stand-in behaves as Faust's ``ProducerBuffer`` does for this wait: a background task takes
one record at a time off ``pending`` and sets ``message_sent`` after handing each on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from types import SimpleNamespace

import pytest

from app.processor import TickProcessor


class Buffer:
    def __init__(self, records: int, stall_after: int | None = None) -> None:
        self.state = "running"
        self.pending = deque(range(records))
        self.message_sent = asyncio.Event()
        self.handed_on: list[int] = []
        self.stall_after = stall_after

    @property
    def size(self) -> int:
        return len(self.pending)

    async def drain(self) -> None:
        while self.pending:
            if self.stall_after is not None and len(self.handed_on) >= self.stall_after:
                return  # the producer stopped taking records
            await asyncio.sleep(0.001)
            self.handed_on.append(self.pending.popleft())
            self.message_sent.set()


async def _wait_for(buffer: Buffer, patience_s: float) -> float:
    processor = SimpleNamespace(producer_buffer=lambda: buffer)
    drainer = asyncio.create_task(buffer.drain())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await TickProcessor._changelog_handed_over(processor, patience_s=patience_s)  # type: ignore[arg-type]
    waited = loop.time() - t0
    drainer.cancel()
    return waited


def test_returns_once_every_queued_record_is_handed_on() -> None:
    buffer = Buffer(records=25)
    asyncio.run(_wait_for(buffer, patience_s=5.0))
    assert buffer.size == 0 and buffer.handed_on == list(range(25))


def test_an_empty_buffer_returns_at_once() -> None:
    assert asyncio.run(_wait_for(Buffer(records=0), patience_s=5.0)) < 0.05


def test_a_stalled_producer_is_logged_and_given_up_after_the_patience(caplog: pytest.LogCaptureFixture) -> None:
    buffer = Buffer(records=10, stall_after=3)
    with caplog.at_level(logging.ERROR, logger="app.processor"):
        waited = asyncio.run(_wait_for(buffer, patience_s=0.2))
    assert buffer.size == 7 and 0.2 <= waited < 2.0
    assert "still queued" in caplog.text and "(7)" in caplog.text
