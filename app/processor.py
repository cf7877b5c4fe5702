"""The worker's batch step: decode, route, fold into state, publish alerts, write state back.

Kept out of the agent so the agent stays one screen and this stays testable. Order within
a batch matters for crash safety: alerts are sent *before* the snapshot that records them
is written, so a crash in between repeats an alert (with the same ``alert_id``) instead of
losing it; the offsets stored in each snapshot make a redelivered tick a no-op.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

# Faust's tables and RocksDB store take the partition of a write (and the one DB a read looks
# in) from this context variable, which Faust sets while an agent iterates a stream event by
# event. Our agent takes micro-batches spanning partitions, so it sets the variable itself,
# in its own task only: never Stream.current_event, which take_events' background reader uses
# to pair each buffered value with its event (overwriting it there loses records).
from faust.streams import _current_event

from app.codec import decode, decode_ticks, encode
from app.metrics import Metrics
from models.alerts import Alert
from models.pipeline import Pipeline, Position, SymbolSnapshot
from models.ticks import Tick

logger = logging.getLogger(__name__)
_partitioner = DefaultPartitioner()


@contextmanager
def _as_current_event(event: Any | None) -> Iterator[None]:
    """Table reads with ``None`` search every local partition; writes need their partition's event."""
    token = _current_event.set(None if event is None else weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def partition_for(symbol: str, partitions: int) -> int:
    """The partition a producer keying by symbol puts the symbol on (Kafka's murmur2)."""
    return int(_partitioner(symbol.encode(), list(range(partitions)), None))


class TickProcessor:
    """State, topics and pipeline of one worker; ``handle`` processes one micro-batch of events."""

    def __init__(
        self, *, pipeline: Pipeline, table: Any, alerts_topic: Any, dlq_topic: Any, keyed_topic: Any,
        ticks_topic_name: str, metrics: Metrics, partitions_of: Callable[[str], int | None],
        recent_alerts: int = 1000,
    ) -> None:
        """``partitions_of(topic)`` gives a topic's partition count (broker metadata)."""
        self.partitions_of = partitions_of
        self.pipeline = pipeline
        self.table = table
        self.alerts_topic = alerts_topic
        self.dlq_topic = dlq_topic
        self.keyed_topic = keyed_topic
        self.ticks_topic_name = ticks_topic_name
        self.metrics = metrics
        self.cache: dict[str, SymbolSnapshot] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent_alerts)
        self._routes: dict[tuple[str, int], int] = {}
        metrics.model_info.labels(pipeline.model_version).set(1)

    def forget_cached_state(self) -> None:
        """Drop in-memory snapshots (partitions moved: the table is the truth again)."""
        self.cache.clear()
        self.metrics.symbols.set(0)

    def _snapshot(self, symbol: str) -> SymbolSnapshot | None:
        snap = self.cache.get(symbol)
        if snap is None:
            with _as_current_event(None):
                raw = self.table.get(symbol)
            if raw is not None:
                snap = SymbolSnapshot.from_state(decode(raw), self.pipeline.config)
                self.cache[symbol] = snap
        return snap

    def _home(self, symbol: str, partitions: int) -> int:
        key = (symbol, partitions)
        home = self._routes.get(key)
        if home is None:
            if len(self._routes) > 100_000:
                self._routes.clear()
            home = self._routes[key] = partition_for(symbol, partitions)
        return home

    async def handle(self, events: Sequence[Any]) -> list[Alert]:
        """Process one micro-batch of events (from one or several partitions)."""
        partitions_of = self.partitions_of
        started = time.perf_counter()
        now_ms = time.time() * 1000.0
        local: list[Tick] = []
        positions: list[Position] = []
        event_of_partition: dict[int, Any] = {}
        for event in events:
            msg = event.message
            ticks, rejected = decode_ticks(event.value)
            for bad in rejected:
                self.metrics.ticks_rejected.labels(bad.reason).inc()
                logger.warning("rejected record %s[%s]@%s: %s %s", msg.topic, msg.partition, msg.offset,
                               bad.reason, bad.detail)
                await self.dlq_topic.send(value=bad.dlq_record(msg.topic, msg.partition, msg.offset))
            if not ticks:
                continue
            partitions = partitions_of(msg.topic) or 1
            # One Kafka record may carry several ticks: they share an offset, told apart by a
            # sub-index so redelivery detection still works (offset * 2^16 + index).
            base = msg.offset << 16
            for j, tick in enumerate(ticks):
                if self._home(tick.symbol, partitions) == msg.partition:
                    local.append(tick)
                    positions.append(Position(msg.topic, msg.partition, base + j))
                else:
                    # Not keyed by symbol: its state lives on another partition; re-key it.
                    self.metrics.ticks_forwarded.inc()
                    await self.keyed_topic.send(key=tick.symbol, value=encode(tick.to_dict()))
            event_of_partition[msg.partition] = event
            # Faust gives the Kafka record timestamp in seconds (float).
            self.metrics.end_to_end_ms.observe(max(0.0, now_ms - msg.timestamp * 1000.0))

        if not local:
            self.metrics.batches.inc()
            return []
        for symbol in {t.symbol for t in local}:
            self._snapshot(symbol)
        # The whole batch in one pipeline call: one model call per batch, whatever the partitions.
        result = self.pipeline.process(self.cache, local, positions)
        for alert in result.alerts:
            record = alert.to_dict()
            await self.alerts_topic.send(key=alert.symbol, value=encode(record))
            self.recent.append(record)
            self.metrics.alerts.labels(alert.severity, alert.rule).inc()
            for detector, verdict in alert.detectors.items():
                if verdict["vote"]:
                    self.metrics.alert_votes.labels(detector).inc()
            logger.info("alert %s %s score=%.3f severity=%s rule=%s", alert.symbol, alert.alert_id,
                        alert.score, alert.severity, alert.rule)
        # Table writes go to the changelog partition of the *current event*, and a batch spans
        # partitions: write each partition's symbols with one of its own events current.
        # One write per symbol per batch.
        home_of = {pos_tick.symbol: pos.partition for pos_tick, pos in zip(local, positions, strict=True)}
        for partition, event in event_of_partition.items():
            with _as_current_event(event):
                for symbol in result.touched:
                    if home_of[symbol] == partition:
                        self.table[symbol] = encode(self.cache[symbol].to_state())
        self.metrics.ticks_processed.inc(len(local) - result.skipped)
        self.metrics.ticks_redelivered.inc(result.skipped)
        self.metrics.batches.inc()
        self.metrics.symbols.set(len(self.cache))
        self.metrics.batch_ms.observe((time.perf_counter() - started) * 1000.0)
        return result.alerts
