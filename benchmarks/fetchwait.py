"""Benchmark-only shim: cap the consumer fetch wait (``fetch_max_wait_ms``) of aiokafka consumers.

Why: the embedded broker (Tansu 0.6) sleeps after *every* fetch iteration, even when it found data
(``remaining / 2`` when at least 250 ms remain, else ``remaining``), so each fetch response is
delayed by about half the consumer's ``fetch_max_wait_ms``. faust-streaming hard-codes 1,500 ms
for its stream consumer (``faust/transport/drivers/aiokafka.py``), so on this broker every Faust
fetch waits ~750 ms; Kafka answers as soon as ``fetch_min_bytes`` (1) are available. The latency
runs are therefore made twice: as shipped, and with this shim capping the wait so that the figure
shows the consumer's own latency rather than the broker's.

The reference contenders (``benchmarks.contenders --fetch-wait-ms``) install it; the worker is given
its own setting instead (``CRYPTOTRACE_CONSUMER_FETCH_MAX_WAIT_MS``), which its transport applies after
building the consumer, so this shim could not cap it.
"""

from __future__ import annotations

from typing import Any


def install(max_wait_ms: int) -> None:
    """Make every ``aiokafka.AIOKafkaConsumer`` created from now on use ``fetch_max_wait_ms=max_wait_ms``."""
    import aiokafka

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "_bench_fetch_wait", None) is not None:
        return

    class CappedFetchWaitConsumer(base):  # type: ignore[misc, valid-type]
        _bench_fetch_wait = max_wait_ms

        def __init__(self, *topics: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = max_wait_ms
            super().__init__(*topics, **kwargs)

    aiokafka.AIOKafkaConsumer = CappedFetchWaitConsumer  # type: ignore[misc]
