"""The worker's Kafka consumer takes its fetch wait from the settings (Faust hard-codes 1,500 ms)."""

from __future__ import annotations

import asyncio

from faust.transport.drivers.aiokafka import Transport

from app.factory import create_app
from app.settings import Settings
from app.transport import FetchWaitTransport


def _built_consumer_wait(settings: Settings) -> tuple[type, int]:
    async def build() -> tuple[type, int]:
        app = create_app(settings, "kafka://127.0.0.1:9")  # nothing is contacted: the consumer is only built
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return type(app.transport), consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    return asyncio.run(build())


def test_worker_consumer_uses_the_configured_fetch_wait() -> None:
    transport, wait = _built_consumer_wait(Settings(consumer_fetch_max_wait_ms=37))
    assert issubclass(transport, Transport) and transport is FetchWaitTransport
    assert wait == 37


def test_default_fetch_wait_is_far_below_fausts_hard_coded_value() -> None:
    _, wait = _built_consumer_wait(Settings())
    assert wait == Settings().consumer_fetch_max_wait_ms == 100

