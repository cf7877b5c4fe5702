"""The worker's consumer calls into aiokafka from aiokafka's own thread only: seeks included.

Faust runs the aiokafka consumer in a thread of its own but called its ``seek`` from the event loop's
thread; aiokafka's seek then deleted from the fetcher's record buffer while the consumer thread read
and deleted in it (``KeyError(TopicPartition)``, the Fetcher crashed, the worker exited: seen in the
join/leave fault test). Here a real consumer thread against the embedded broker records which thread
each seek runs on.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from faust.types import TP

from app.broker import EmbeddedBroker
from app.factory import create_app
from app.settings import Settings

pytestmark = pytest.mark.integration


def test_seek_runs_on_the_consumer_thread(broker: EmbeddedBroker) -> None:
    async def scenario() -> tuple[int, int, list[int], int | None]:
        app = create_app(Settings(app_id="consumer-thread-seek"), broker.url)
        consumer = app.consumer
        thread = consumer._thread
        ran_on: list[int] = []
        real_seek = thread.seek

        def recording_seek(partition: TP, offset: int) -> None:
            ran_on.append(threading.get_ident())
            real_seek(partition, offset)

        thread.seek = recording_seek  # type: ignore[method-assign]
        await thread.start()
        try:
            consumer_thread = thread._thread.ident if thread._thread else -1
            tp = TP("consumer-thread-seek-ticks", 0)

            async def assign() -> None:  # by hand, on the consumer thread: no group rebalance needed
                thread._ensure_consumer().assign([tp])

            await thread.call_thread(assign)
            await consumer.seek(tp, 5)
            position = await thread.position(tp)
        finally:
            await thread.stop()
        return threading.get_ident(), consumer_thread, ran_on, position

    loop_thread, consumer_thread, ran_on, position = asyncio.run(scenario())
    assert consumer_thread != loop_thread
    assert ran_on == [consumer_thread]
    assert position == 5  # the seek took effect
