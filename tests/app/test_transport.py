"""The worker's Kafka consumer takes its fetch wait from the settings (Faust hard-codes 1,500 ms)."""

from __future__ import annotations

import asyncio

from faust.transport.drivers.aiokafka import Transport
from faust.types import TP

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



def test_faust_read_offsets_are_blind_for_stream_partitions_only() -> None:
    """Faust's drain loop drops records below its read offset, which it sets after handing a record on;
    a re-seek made meanwhile was overwritten and the records fetched again were dropped. The gate
    orders stream partitions, so there the read offset reads as unknown; changelogs keep it."""

    async def scenario() -> tuple[object, object, object]:
        settings = Settings()
        app = create_app(settings, "kafka://127.0.0.1:9")
        consumer = app.consumer
        stream_tp = TP(settings.ticks_topic, 0)
        changelog_tp = TP(f"{settings.app_id}-symbol-state-changelog", 0)
        consumer._read_offset[stream_tp] = 4900
        consumer._read_offset[changelog_tp] = 17
        unknown = consumer._read_offset[TP(f"{settings.app_id}-symbol-state-changelog", 3)]
        return consumer._read_offset[stream_tp], consumer._read_offset[changelog_tp], unknown

    assert asyncio.run(scenario()) == (None, 17, None)
