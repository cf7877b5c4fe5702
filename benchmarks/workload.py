"""Workload of the end-to-end benchmark: the ticks, their Kafka records, bulk and paced producing.

Ticks come from :mod:`models.synthetic` (the same generator the demo and training use), cut to
exactly ``n`` ticks. Records are keyed by symbol (Kafka's default murmur2 partitioner), either one
tick per record (a JSON object) or one symbol's consecutive ticks per record (a JSON array), which
the worker accepts as well.

Paced producing (the latency runs) gives every tick a *scheduled* send time ``t0 + i / rate``; the
tick's ``timestamp`` field and its Kafka record timestamp are that scheduled time (ms). Latency is
measured from it, so a producer that falls behind its schedule adds to the measured latency instead
of hiding it (no coordinated omission); the report also gives the producer's own lag. The paced
producer lingers as the collector's does (``KAFKA_LINGER_MS``), and the linger counts in the latency.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from app.collector.producer import KAFKA_LINGER_MS
from models.synthetic import default_profiles, generate

Tick = dict[str, Any]
#: One Kafka record: key, value, number of ticks it carries.
Record = tuple[bytes, bytes, int]


def make_ticks(n: int, symbols: int, *, seed: int = 1, start_ms: int | None = None,
               liquid_only: bool = False) -> list[Tick]:
    """Exactly ``n`` synthetic ticks of ``symbols`` symbols, in timestamp order.

    ``liquid_only`` uses liquid profiles only (2-10 trades/s each), so that nearly every symbol
    appears even when there are few ticks per symbol (the symbol-count sweep).
    """
    if n < 1 or symbols < 1:
        raise ValueError("n and symbols must be >= 1")
    profiles = default_profiles(symbols, seed=seed, illiquid_fraction=0.0 if liquid_only else 0.5)
    rate = sum(p.trades_per_s for p in profiles)
    duration = max(1.0, n / rate * 1.15)
    for _ in range(12):
        start = start_ms if start_ms is not None else int(time.time() * 1000) - int(duration * 1000) - 60_000
        batch, _ = generate(profiles, start_ms=start, duration_s=duration, seed=seed)
        if len(batch) >= n:
            return list(itertools.islice(batch.records(), n))
        duration *= 1.5
    raise RuntimeError(f"could not generate {n} ticks for {symbols} symbols")


def single_records(ticks: Sequence[Tick]) -> list[Record]:
    """One record per tick (a JSON object), keyed by symbol."""
    return [(t["symbol"].encode(), orjson.dumps(t), 1) for t in ticks]


def batched_records(ticks: Sequence[Tick], max_per_record: int = 100) -> list[Record]:
    """Consecutive ticks of one symbol packed into JSON arrays of at most ``max_per_record``.

    A symbol's buffer is emitted when full; the remainders at the end. Each symbol's ticks stay
    in order (one key, one partition); the interleaving across symbols changes, as with a feed
    that buffers per symbol.
    """
    out: list[Record] = []
    buffers: dict[str, list[Tick]] = {}
    for t in ticks:
        buf = buffers.setdefault(t["symbol"], [])
        buf.append(t)
        if len(buf) >= max_per_record:
            out.append((t["symbol"].encode(), orjson.dumps(buf), len(buf)))
            buffers[t["symbol"]] = []
    for sym, buf in buffers.items():
        if buf:
            out.append((sym.encode(), orjson.dumps(buf), len(buf)))
    return out


def _producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, max_batch_size=256 * 1024, acks=1)


async def _produce_bulk(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = _producer(bootstrap, linger_ms=10)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value, _ in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()


def produce_bulk(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    """Send ``records`` as fast as the producer takes them (the pre-produced throughput topics)."""
    asyncio.run(_produce_bulk(bootstrap, topic, records))


def produce_now(bootstrap: str, topic: str, ticks: Sequence[Tick]) -> list[Tick]:
    """Send ``ticks`` one per record, stamped with the current time; returns the stamped ticks."""
    now = int(time.time() * 1000)
    stamped = [{**t, "timestamp": now} for t in ticks]
    asyncio.run(_produce_bulk(bootstrap, topic, single_records(stamped)))
    return stamped


@dataclass
class PacedResult:
    """What a paced run sent: the stamped ticks in send order and the producer's own lag."""

    ticks: list[Tick]
    records: int
    start_ms: int
    producer_lag_ms_p99: float
    producer_lag_ms_max: float


async def _produce_paced(bootstrap: str, topic: str, ticks: Sequence[Tick], rate: float, batched: bool,
                         flush_ms: float, max_per_record: int) -> PacedResult:
    # The collector's producer settings: with linger 0 the paced sends alone saturated the embedded
    # broker, and every contender's latency measured the broker's queue.
    producer = _producer(bootstrap, linger_ms=KAFKA_LINGER_MS)
    await producer.start()
    try:
        t0 = int(time.time() * 1000) + 200
        sched = [t0 + int(i * 1000.0 / rate) for i in range(len(ticks))]
        stamped = [{**t, "timestamp": ts} for t, ts in zip(ticks, sched, strict=True)]
        lags: list[float] = []
        pending: list[asyncio.Future[Any]] = []
        records = 0
        i, n = 0, len(stamped)
        next_flush = t0 + flush_ms
        while i < n:
            now = time.time() * 1000.0
            if batched:
                if now < next_flush and sched[-1] > now:
                    await asyncio.sleep((next_flush - now) / 1000.0)
                    continue
                next_flush = now + flush_ms
                j = i
                while j < n and sched[j] <= now:
                    j += 1
                groups: dict[str, list[Tick]] = {}
                for t in stamped[i:j]:
                    groups.setdefault(t["symbol"], []).append(t)
                stamp = int(now)
                for sym, items in groups.items():
                    for k in range(0, len(items), max_per_record):
                        part = items[k:k + max_per_record]
                        pending.append(await producer.send(topic, orjson.dumps(part), key=sym.encode(),
                                                           timestamp_ms=stamp))
                        records += 1
                lags.extend(now - sched[k] for k in range(i, j))
                i = j
            else:
                while i < n and sched[i] <= now:
                    t = stamped[i]
                    pending.append(await producer.send(topic, orjson.dumps(t), key=t["symbol"].encode(),
                                                       timestamp_ms=sched[i]))
                    lags.append(now - sched[i])
                    records += 1
                    i += 1
                if i < n:
                    await asyncio.sleep(max(0.0, (sched[i] - time.time() * 1000.0) / 1000.0))
            if len(pending) >= 2000:
                done = [f for f in pending if f.done()]
                await asyncio.gather(*done)
                pending = [f for f in pending if not f.done()]
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
    return PacedResult(stamped, records, t0, round(p99, 2), round(lags[-1] if lags else 0.0, 2))


def produce_paced(bootstrap: str, topic: str, ticks: Sequence[Tick], *, rate: float, batched: bool = False,
                  flush_ms: float = 10.0, max_per_record: int = 100) -> PacedResult:
    """Send ``ticks`` at ``rate`` ticks/s on a fixed schedule starting ~0.2 s from now.

    Single mode: one record per tick, sent when due (the loop wakes about every millisecond).
    Batched mode: every ``flush_ms`` the due ticks are sent grouped by symbol (arrays of at most
    ``max_per_record``), the record stamped with the flush time; each tick keeps its own
    scheduled timestamp, so the batching wait counts in its latency.
    """
    return asyncio.run(_produce_paced(bootstrap, topic, ticks, rate, batched, flush_ms, max_per_record))
