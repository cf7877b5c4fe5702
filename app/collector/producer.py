"""Ticks to Kafka: buffered per symbol, sent as JSON-array records keyed by symbol.

Packing several ticks of one symbol into one record (the worker decodes an object or an array,
see :func:`app.codec.decode_ticks`) cuts the per-record cost on both sides; keying by symbol
keeps each symbol's ticks in one partition, in exchange order, so the worker never re-keys.

The read loops only append to an in-memory buffer (no await); one flusher task sends it every
``linger_s`` or as soon as ``max_batch`` ticks wait. The buffer is bounded: when Kafka cannot
keep up for long, new ticks are dropped and counted (``ticks_dropped``) rather than letting
memory grow until the process dies or blocking the sockets until the exchanges disconnect us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import orjson

from app.collector.metrics import CollectorMetrics
from models.ticks import Tick

logger = logging.getLogger(__name__)

# The Kafka producer's own linger. With 0, a feed of 5,000 ticks/s sent one produce request per tick:
# the embedded broker used 0.87 cores and a plain consumer read p99 296-750 ms; with 5 ms, 0.22-0.46
# cores and p99 20-65 ms (`python -m benchmarks.broker_latency`, 2026-12-06-broker-latency.json).
KAFKA_LINGER_MS = 5


class Producer(Protocol):
    """The part of :class:`aiokafka.AIOKafkaProducer` the batcher uses."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> asyncio.Future[Any]:
        ...


def encode_ticks(ticks: list[Tick]) -> bytes:
    """One record: a JSON array of tick objects (the ``ticks`` topic's batched form)."""
    return orjson.dumps([t.to_dict() for t in ticks])


class TickBatcher:
    """Buffers ticks and produces them in per-symbol JSON-array records.

    Parameters
    ----------
    producer : Producer
        A started aiokafka producer.
    topic : str
    metrics : CollectorMetrics
    exchange : str
        Metrics label.
    max_batch : int
        Flush as soon as this many ticks are buffered.
    linger_s : float
        Flush at least this often (the latency the batching adds, at most).
    max_per_record : int
        Ticks per record (well under the worker's 10,000 and its 1 MiB record cap: ~130 bytes each).
    max_buffer : int
        Ticks held at most while Kafka is slow; beyond, new ticks are dropped and counted.
    clock : callable
        Wall-clock seconds, for the exchange-to-Kafka lag.
    """

    def __init__(self, producer: Producer, topic: str, metrics: CollectorMetrics, exchange: str, *,
                 max_batch: int = 1000, linger_s: float = 0.05, max_per_record: int = 500,
                 max_buffer: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.producer = producer
        self.topic = topic
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.max_per_record = max_per_record
        self.max_buffer = max_buffer
        self.clock = clock
        self._pending: dict[str, list[Tick]] = {}
        self._count = 0
        self._inflight: set[asyncio.Future[Any]] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._stats = metrics.stats(exchange)
        self._errors = metrics.produce_errors.labels(exchange)
        self._dropped = metrics.ticks_dropped.labels(exchange)
        self._drops_logged = 0

    @property
    def buffered(self) -> int:
        return self._count

    def add(self, ticks: list[Tick]) -> None:
        """Buffer one frame's ticks (the handler's sink). Never blocks."""
        if self._count + len(ticks) > self.max_buffer:
            self._dropped.inc(len(ticks))
            self._drops_logged += 1
            if self._drops_logged <= 10 or self._drops_logged % 1000 == 0:
                logger.error("tick buffer full (%d ticks): Kafka is not keeping up; dropping %d tick(s)",
                             self._count, len(ticks))
            return
        pending = self._pending
        for t in ticks:
            bucket = pending.get(t.symbol)
            if bucket is None:
                pending[t.symbol] = [t]
            else:
                bucket.append(t)
        self._count += len(ticks)
        if self._count >= self.max_batch:
            self._wake.set()

    async def run(self) -> None:
        """Flush every ``linger_s`` (or when a batch is full) until :meth:`close`; then send what is
        left and wait for every acknowledgement.

        Stopped by :meth:`close`, not by cancellation: on Python 3.11 ``asyncio.wait_for`` can
        swallow a cancel that lands as the wake-up event fires, and the final drain must run.
        """
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.linger_s)
            self._wake.clear()
            await self.flush()
        await self.drain()

    def close(self) -> None:
        """Ask :meth:`run` to drain and return (the read loops must be stopped first)."""
        self._closed = True
        self._wake.set()

    async def drain(self) -> None:
        """Send everything buffered and wait until Kafka has acknowledged (or failed) it all."""
        await self.flush()
        if self._inflight:
            await asyncio.wait(list(self._inflight))

    async def flush(self) -> None:
        if not self._count:
            return
        pending, self._pending, self._count = self._pending, {}, 0
        for symbol, ticks in pending.items():
            key = symbol.encode()
            for i in range(0, len(ticks), self.max_per_record):
                chunk = ticks[i : i + self.max_per_record]
                try:
                    # send() returns once the record is in the producer's buffer (it waits when
                    # that is full: backpressure lands here, not in the read loops).
                    fut = await self.producer.send(self.topic, encode_ticks(chunk), key=key)
                except Exception as exc:  # noqa: BLE001 - any client error: count, log, go on
                    self._errors.inc(len(chunk))
                    logger.error("could not produce %d tick(s) of %s: %r", len(chunk), symbol, exc)
                    continue
                self._inflight.add(fut)
                fut.add_done_callback(partial(self._acked, chunk))

    def _acked(self, chunk: list[Tick], fut: asyncio.Future[Any]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self._errors.inc(len(chunk))
            logger.error("Kafka did not acknowledge %d tick(s) of %s: %r", len(chunk), chunk[0].symbol,
                         None if fut.cancelled() else fut.exception())
            return
        now_ms = self.clock() * 1000.0
        stats = self._stats
        observe = stats.kafka_lag.observe
        for t in chunk:
            observe(now_ms - t.timestamp)
        stats.ticks_produced += len(chunk)
        stats.records_produced += 1
