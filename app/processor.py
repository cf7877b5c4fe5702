"""The worker's batch step: decode, route, fold into state, publish alerts, write state back.

Kept out of the agent so the agent stays one screen and this stays testable. Order within
a batch matters for crash safety: alerts are sent, and acknowledged by the broker, *before* the
snapshot that records them is written, so a crash in between repeats an alert (with the same
``alert_id``) instead of losing it; the offsets stored in each snapshot make a redelivered tick a no-op.

After the state: the read models (summaries, chart points, recent alerts) go to the
dashboard cache in one write per batch. They are derived views, never read back by the
pipeline, so losing them (Redis down) loses no detection state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

# Faust's tables and RocksDB store take the partition of a write (and the one DB a read looks
# in) from this context variable, which Faust sets while an agent iterates a stream event by
# event. Our agent takes micro-batches spanning partitions, so it sets the variable itself,
# in its own task only: never Stream.current_event, which take_events' background reader uses
# to pair each buffered value with its event (overwriting it there loses records).
from faust.streams import _current_event
from faust.types import TP

from app.cache import SymbolCache
from app.codec import Rejected, decode, decode_ticks, encode
from app.metrics import Metrics
from app.summary import History, bands_of, summary_of
from models.alerts import Alert
from models.ensemble import MEMBERS, RecordingBundle
from models.pipeline import Pipeline, Position, SymbolSnapshot, last_scored_by_symbol, record_positions, symbols_of
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
        alerts_table: Any = None, cache: SymbolCache | None = None, owner: str = "",
        highwater_of: Callable[[TP], int | None] | None = None, recent_alerts: int = 20,
        history_points: int = 360, producer_buffer: Callable[[], Any] | None = None,
    ) -> None:
        """``partitions_of(topic)`` gives a topic's partition count (broker metadata)."""
        self.partitions_of = partitions_of
        self.pipeline = pipeline
        self.table = table
        self.alerts_table = alerts_table
        self.alerts_topic = alerts_topic
        self.dlq_topic = dlq_topic
        self.keyed_topic = keyed_topic
        self._keyed_name = keyed_topic.get_topic_name()
        self.ticks_topic_name = ticks_topic_name
        self.metrics = metrics
        self.dashboard = cache or SymbolCache(None, "", metrics, size=10_000, ttl_s=1.0,
                                              history_points=history_points, alerts_per_symbol=recent_alerts)
        self.owner = owner
        self.highwater_of = highwater_of
        self.producer_buffer = producer_buffer
        self.recent_per_symbol = recent_alerts
        self.cache: dict[str, SymbolSnapshot] = {}
        self.members: dict[str, dict[str, float]] = {}  # last scored tick's member probabilities
        self.history = History(history_points, bar_ms=int(pipeline.config.features.bar_seconds * 1000))
        self._routes: dict[tuple[str, int], int] = {}
        self._synced_epoch = 0
        self._cache_lock = asyncio.Lock()  # a timer resync and a batch's publish never interleave
        self._unpublished_alerts: set[str] = set()
        self.use_model(pipeline)

    # --------------------------------------------------------------------------- model
    def use_model(self, pipeline: Pipeline) -> None:
        """Switch to another pipeline (model version); takes effect at the next batch."""
        if pipeline.bundle is not None and not isinstance(pipeline.bundle, RecordingBundle):
            pipeline = Pipeline(pipeline.config, RecordingBundle.wrap(pipeline.bundle))
        old = getattr(self, "_model_version", None)
        if old is not None and old != pipeline.model_version:
            self.metrics.model_info.remove(old)
        self.pipeline = pipeline
        self._model_version = pipeline.model_version
        self.metrics.model_info.labels(pipeline.model_version).set(1)

    def forget_cached_state(self) -> None:
        """Drop in-memory snapshots (partitions moved: the table is the truth again)."""
        self.cache.clear()
        self.members.clear()
        self.metrics.symbols.set(0)

    # --------------------------------------------------------------------------- reads
    def snapshot(self, symbol: str) -> SymbolSnapshot | None:
        snap = self.cache.get(symbol)
        if snap is None:
            with _as_current_event(None):
                raw = self.table.get(symbol)
                if raw is None:
                    # Written before the table had raw keys: the key was JSON ('"BTCUSDT"'), in the
                    # same partition. Read it once; the next write stores it under the raw key.
                    raw = self.table.get(json.dumps(symbol))
            if raw is not None:
                snap = SymbolSnapshot.from_state(decode(raw), self.pipeline.config)
                self.cache[symbol] = snap
        return snap

    def summary(self, symbol: str, snap: SymbolSnapshot | None = None) -> dict[str, Any] | None:
        snap = snap or self.snapshot(symbol)
        if snap is None:
            return None
        p = self.pipeline
        return summary_of(snap, members=self.members.get(symbol), threshold=p.config.alert_threshold,
                          cooldown_s=p.config.cooldown_s, model_version=p.model_version, owner=self.owner)

    def symbol_alerts(self, symbol: str) -> list[dict[str, Any]]:
        """Recent alerts of a symbol, oldest first, from the changelogged alerts table."""
        if self.alerts_table is None:
            return []
        with _as_current_event(None):
            raw = self.alerts_table.get(symbol)
        return list(decode(raw)) if raw is not None else []

    def _home(self, symbol: str, partitions: int) -> int:
        key = (symbol, partitions)
        home = self._routes.get(key)
        if home is None:
            if len(self._routes) > 100_000:
                self._routes.clear()
            home = self._routes[key] = partition_for(symbol, partitions)
        return home

    # --------------------------------------------------------------------------- the batch
    async def handle(self, events: Sequence[Any]) -> list[Alert]:
        """Process one micro-batch of events (from one or several partitions)."""
        pipeline = self.pipeline  # a model swap lands between batches, never inside one
        partitions_of = self.partitions_of
        started = time.perf_counter()
        local: list[Tick] = []
        positions: list[Position] = []
        # Each local symbol's partition (that of its last tick here), kept per record, not per tick.
        home_of: dict[str, int] = {}
        event_of_partition: dict[int, Any] = {}
        last_offset: dict[TP, int] = {}
        ticks_in = 0  # counted once per batch: a counter's inc takes a lock, per record it showed in profiles
        for event in events:
            msg = event.message
            last_offset[TP(msg.topic, msg.partition)] = msg.offset
            ticks, rejected = decode_ticks(event.value)
            for bad in rejected:
                self.metrics.ticks_rejected.labels(bad.reason).inc()
                logger.warning("rejected record %s[%s]@%s: %s %s", msg.topic, msg.partition, msg.offset,
                               bad.reason, bad.detail)
                await self.dlq_topic.send(value=bad.dlq_record(msg.topic, msg.partition, msg.offset))
                self.metrics.dead_letters.labels(bad.reason).inc()
            if not ticks:
                continue
            ticks_in += len(ticks)
            partitions = partitions_of(msg.topic) or 1
            # Records of the re-key topic were keyed by a worker: never forward them again.
            rekeyed = msg.topic == self._keyed_name
            # One Kafka record may carry several ticks: they share an offset, told apart by a
            # sub-index so redelivery detection still works (offset * 2^16 + index).
            base = msg.offset << 16
            # The common case in one step: every symbol of the record lives here (a batched record holds
            # one symbol's ticks), so the routing is decided per symbol, not per tick, and the positions
            # are built by the compiled core (per tick here, they cost ~1 us a tick).
            symbols = symbols_of(ticks)
            if rekeyed or all(self._home(s, partitions) == msg.partition for s in symbols):
                local.extend(ticks)
                home_of.update(dict.fromkeys(symbols, msg.partition))
                positions.extend(record_positions(msg.topic, msg.partition, base, len(ticks)))
                event_of_partition[msg.partition] = event
                continue
            for j, tick in enumerate(ticks):
                if self._home(tick.symbol, partitions) == msg.partition:
                    local.append(tick)
                    home_of[tick.symbol] = msg.partition
                    positions.append(Position(msg.topic, msg.partition, base + j))
                else:
                    # Not keyed by symbol: its state lives on another partition; re-key it.
                    self.metrics.ticks_forwarded.inc()
                    await self.keyed_topic.send(key=tick.symbol, value=encode(tick.to_dict()))
            event_of_partition[msg.partition] = event
        if ticks_in:
            self.metrics.ticks_in.inc(ticks_in)

        alerts = await self._apply(pipeline, local, positions, home_of, event_of_partition) if local else []
        self.metrics.batches.inc()
        self.metrics.batch_ms.observe((time.perf_counter() - started) * 1000.0)
        # End to end: record written to Kafka -> its alerts sent and its state written.
        now_ms = time.time() * 1000.0
        for event in events:
            self.metrics.end_to_end_ms.observe(max(0.0, now_ms - event.message.timestamp * 1000.0))
        self._observe_lag(last_offset)
        return alerts

    async def _apply(self, pipeline: Pipeline, local: list[Tick], positions: list[Position],
                     home_of: dict[str, int], event_of_partition: dict[int, Any]) -> list[Alert]:
        for symbol in home_of:
            self.snapshot(symbol)
        bundle = pipeline.bundle if isinstance(pipeline.bundle, RecordingBundle) else None
        if bundle is not None:
            bundle.reset()
        # The whole batch in one pipeline call, whatever the partitions (one model call per step of it),
        # without the model input rows: only a retraining job reads them.
        result = pipeline.process(self.cache, local, positions, model_rows=False)
        self._record_members(local, result.scores, bundle)
        for i, reason, detail in result.rejected:
            pos = positions[i]
            self.metrics.ticks_rejected.labels(reason).inc()
            self.metrics.dead_letters.labels(reason).inc()
            logger.warning("rejected tick %s[%s]@%s: %s %s", pos.topic, pos.partition, pos.offset >> 16, reason, detail)
            bad = Rejected(reason, detail, encode(local[i].to_dict()))
            await self.dlq_topic.send(value=bad.dlq_record(pos.topic, pos.partition, pos.offset >> 16))
        records = []
        sent: list[Awaitable[Any]] = []
        for alert in result.alerts:
            record = alert.to_dict()
            records.append(record)
            self._unpublished_alerts.add(alert.alert_id)
            # force: never attached to an event, which Faust would publish only at the event's ack.
            sent.append(await self.alerts_topic.send(key=alert.symbol, value=encode(record), force=True))
            self.metrics.alerts.labels(alert.severity, alert.rule).inc()
            for detector, verdict in alert.detectors.items():
                if verdict["vote"]:
                    self.metrics.alert_votes.labels(detector).inc()
            logger.info("alert %s %s score=%.3f severity=%s rule=%s", alert.symbol, alert.alert_id,
                        alert.score, alert.severity, alert.rule)
        if sent:
            # Delivered, not only queued, before the state that records them is written. The state's
            # changelog records go to other partitions in other producer batches: a kill -9 after they
            # landed and before the alerts did lost the alerts, since the restarted worker skips the
            # ticks its state says it applied (seen once in three runs of the kill -9 fault test).
            await asyncio.gather(*sent)
        # Table writes go to the changelog partition of the *current event*, and a batch spans
        # partitions: write each partition's symbols with one of its own events current.
        # One write per symbol per batch.
        by_symbol: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_symbol.setdefault(record["symbol"], []).append(record)
        for partition, event in event_of_partition.items():
            with _as_current_event(event):
                for symbol in result.touched:
                    if home_of[symbol] != partition:
                        continue
                    if symbol in by_symbol and self.alerts_table is not None:
                        self._append_alerts(symbol, by_symbol[symbol])
                    self.table[symbol] = encode(self.cache[symbol].to_state())
        await self._changelog_handed_over()
        self.metrics.ticks_processed.inc(len(local) - result.skipped - len(result.rejected))
        self.metrics.ticks_redelivered.inc(result.skipped)
        self.metrics.symbols.set(len(self.cache))
        await self._publish(local, result.scores, result.touched, records)
        return result.alerts

    async def _changelog_handed_over(self, patience_s: float = 30.0) -> None:
        """Return once the table writes of this batch have left Faust's producer buffer.

        Table writes are synchronous, so Faust queues their changelog records in a buffer that a
        background task hands to aiokafka. Offsets are committed without waiting for that buffer,
        and Faust's flush at a rebalance or stop gives up after 100 ms without progress
        (``ProducerBuffer.flush_atmost``). Under load that let a worker commit offsets whose
        state records were still queued, and the next owner of the partition recovered older
        state: ticks lost (seen in CI as 8 ticks of one symbol after a worker left). Acking a
        batch's events only after this returns makes committed offsets imply queued-in-aiokafka
        state records, which Faust's flush (aiokafka's) does wait for.
        """
        buffer = self.producer_buffer() if self.producer_buffer is not None else None
        if buffer is None or buffer.state != "running":
            return  # no producer drains it (Faust's agent test context): nothing to wait for
        waited = 0.0
        while buffer.size:
            buffer.message_sent.clear()
            try:
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)
            except TimeoutError:
                waited += 1.0
                if waited >= patience_s:
                    logger.error("changelog records still queued after %.0f s (%d): producer stalled?",
                                 waited, buffer.size)
                    return

    def _append_alerts(self, symbol: str, new: list[dict[str, Any]]) -> None:
        """Keep the symbol's newest alerts in its table row; a re-sent alert (same id) is not added twice."""
        raw = self.alerts_table.get(symbol)
        kept = list(decode(raw)) if raw is not None else []
        seen = {a["alert_id"] for a in kept}
        kept.extend(a for a in new if a["alert_id"] not in seen)
        self.alerts_table[symbol] = encode(kept[-self.recent_per_symbol:])

    def _record_members(self, ticks: list[Tick], scores: list[float | None], bundle: RecordingBundle | None) -> None:
        """Member probabilities of each symbol's last scored tick, and how often each member fires."""
        scored = len(scores) - scores.count(None)
        if not scored:
            return
        # Only each symbol's last scored tick is kept: one dict per symbol, not one per tick (a batch
        # carries hundreds of ticks of a few symbols); the compiled core finds those ticks.
        probs = bundle.recorded_probs if bundle is not None else None
        if probs is not None and len(probs) == scored:
            for symbol, k in last_scored_by_symbol(ticks, scores).items():
                self.members[symbol] = dict(zip(MEMBERS, probs[k].tolist(), strict=True))
            fires = (probs >= 0.5).sum(axis=0)
            for j, m in enumerate(MEMBERS):
                if fires[j]:
                    self.metrics.detector_fires.labels(m).inc(int(fires[j]))
            return
        n = 0
        last: dict[str, float] = {}
        staged = [i for i, s in enumerate(scores) if s is not None]
        for i in staged:  # statistical layer alone: its score is the only member
            score = float(scores[i] or 0.0)
            last[ticks[i].symbol] = score
            n += score >= 0.5
        for symbol, score in last.items():
            self.members[symbol] = {"statistical": score}
        if n:
            self.metrics.detector_fires.labels("statistical").inc(n)

    async def _publish(self, ticks: list[Tick], scores: list[float | None], touched: set[str],
                       alerts: list[dict[str, Any]]) -> None:
        """The batch's read models to the dashboard cache: one write, whatever the symbol count."""
        async with self._cache_lock:
            if self._cache_stale():
                await self._resync()  # before this batch's points are folded in: they follow as usual
            bands = {s: bands_of(self.cache[s]) for s in touched}
            points = self.history.fold(ticks, scores, bands)
            summaries = {s: summary for s in touched if (summary := self.summary(s, self.cache[s])) is not None}
            ok = await self.dashboard.publish(summaries, points, alerts)
            self._unpublished_alerts.clear()
            if not ok and self.dashboard.link is not None:
                self._synced_epoch = -1  # this write was dropped: rewrite everything once Redis answers

    async def sync_cache(self) -> None:
        """Rewrite the cache if a write was dropped or Redis came back (called by a timer too).

        Not only from batches: after a dropped write with no more ticks for this worker's symbols,
        the cache would otherwise keep stale values until new ticks arrive (seen in CI: one
        symbol's count stuck behind after Redis timed out under load).
        """
        async with self._cache_lock:
            if self._cache_stale():
                await self._resync()

    def _cache_stale(self) -> bool:
        link = self.dashboard.link
        return link is not None and link.epoch != self._synced_epoch

    async def _resync(self) -> None:
        """Rewrite everything this worker owns (Redis may be empty). Marks the cache synced on success."""
        summaries: dict[str, dict[str, Any]] = {}
        points: dict[str, Any] = {}
        alerts: list[dict[str, Any]] = []
        # Alerts of a batch still in flight are already in the alerts table; its own publish adds them.
        pending = self._unpublished_alerts
        for symbol, snap in self.cache.items():
            summary = self.summary(symbol, snap)
            if summary is not None:
                summaries[symbol] = summary
            points[symbol] = (False, self.history.get(symbol))
            alerts.extend(a for a in self.symbol_alerts(symbol) if a["alert_id"] not in pending)
        ok = await self.dashboard.publish(summaries, points, alerts, replace=True)
        link = self.dashboard.link
        if ok and link is not None:
            self._synced_epoch = link.epoch  # read after the call: a recovery during it bumps the epoch
        if ok:
            logger.info("dashboard cache resync of %d symbols done", len(summaries))

    def _observe_lag(self, last_offset: dict[TP, int]) -> None:
        if self.highwater_of is None:
            return
        for tp, offset in last_offset.items():
            try:
                high = self.highwater_of(tp)
            except Exception as exc:  # noqa: BLE001 - metadata not known yet (during a rebalance): skip
                logger.debug("no high watermark for %s yet: %s", tp, exc)
                continue
            if high is not None:
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - offset - 1))
