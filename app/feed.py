"""Producing ticks to Kafka: batched, keyed by symbol, paced in event time.

``produce_ticks`` sends an iterable of tick dicts (sorted by timestamp). Ticks before
``live_from_ms`` are a backfill and go out as fast as the producer takes them; after it
they are paced so that ``speed`` seconds of event time pass per wall-clock second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

logger = logging.getLogger(__name__)


def bootstrap_of(broker_url: str) -> str:
    """Faust URL(s) (``kafka://h:p;kafka://h2:p``) to an aiokafka bootstrap string."""
    hosts = [u.split("://", 1)[-1].rstrip("/") for u in broker_url.replace(",", ";").split(";") if u]
    return ",".join(hosts)


async def produce_ticks(
    broker_url: str,
    topic: str,
    records: Iterable[dict[str, Any]],
    *,
    live_from_ms: int | None = None,
    speed: float = 1.0,
    stop: asyncio.Event | None = None,
    progress: Any = None,
    client: dict[str, Any] | None = None,
) -> int:
    """Send ``records`` to ``topic``; returns how many were sent. ``client``: extra aiokafka arguments (TLS/SASL)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(broker_url), linger_ms=10,
                                max_batch_size=256 * 1024, acks=1, **(client or {}))
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    wall0: float | None = None
    try:
        for rec in records:
            if stop is not None and stop.is_set():
                break
            ts = rec["timestamp"]
            if live_from_ms is not None and ts >= live_from_ms:
                if wall0 is None:
                    wall0 = time.monotonic()
                    await producer.flush()
                    logger.info("backfill sent (%d ticks); live at %sx event time", sent, speed)
                delay = wall0 + (ts - live_from_ms) / 1000.0 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(topic, orjson.dumps(rec), key=rec["symbol"].encode()))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                if progress is not None:
                    progress.update(5000)
        if pending:
            await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
