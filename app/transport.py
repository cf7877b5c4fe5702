"""Faust's aiokafka transport with four changes: the fetch wait, records in offset order, honest acks,
and seeks made on the consumer thread.

**Fetch wait.** faust-streaming builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded
(``faust/transport/drivers/aiokafka.py``). Against Kafka that only bounds idle polls, but the
embedded broker (Tansu 0.6) sleeps about half the remaining wait after every fetch, even one
that found data, so each fetch answered ~750 ms late. The thread below builds the consumer the
way Faust does and then sets the wait, which aiokafka reads when the consumer starts.

**Records in offset order.** Faust 0.15.3 can hand a partition's records to the agent out of
order around a rebalance (a fetch from before a seek delivered after it, records dropped after
aiokafka moved past them); the state's redelivery check then skips the records that come late, and
ticks are lost. The consumer below passes every stream record through an :class:`OffsetGate`
(:mod:`app.offset_gate` explains the failure and the rule) and makes the seeks it asks for.

**Honest acks.** Faust acks the stream records it skips during a rebalance, and those acks can be
committed; the consumer records an ack only for a record the agent was handed
(:mod:`app.ack_guard`).

**Seeks on the consumer thread.** Faust calls aiokafka's ``seek`` from the event loop's thread while
aiokafka runs in a thread of its own; see ``_FetchWaitConsumer._seek``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.transport import by_url
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message, TransportT
from mode import ServiceT

from app.ack_guard import AckGuard
from app.offset_gate import OffsetGate, Verdict

logger = logging.getLogger(__name__)
POSITION_CHECK_S = 1.0  # how often positions are compared with the gate (one thread call per partition)


class _FetchWaitConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka passes this to its Fetcher in start(), which runs after this returns.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _ReadOffsets(dict[Any, Any]):
    """Faust's per-partition "read offset", blind (None) for stream partitions.

    Faust's drain loop drops a record below the read offset and marks any jump past it as a gap it
    may commit. Both fight the gate: the loop sets the read offset *after* handing a record on, so a
    re-seek made meanwhile was overwritten and the records fetched again were dropped (seen as a
    re-seek loop, and as records that vanished on their way to the agent). The gate orders stream
    partitions itself; changelog partitions keep Faust's bookkeeping.
    """

    def __init__(self, is_stream_topic: Callable[[str], bool]) -> None:
        super().__init__()
        self._is_stream_topic = is_stream_topic

    def __missing__(self, tp: Any) -> None:
        return None  # Faust's defaultdict(lambda: None)

    def __getitem__(self, tp: Any) -> Any:
        return None if self._is_stream_topic(tp.topic) else super().__getitem__(tp)


class _FetchWaitConsumer(Consumer):
    """Faust's consumer, plus the offset gate and the ack guard for stream (non-changelog) topics.

    ``getmany`` stamps each stream record with the gate epoch its fetch started in; the agent asks
    :meth:`admit_events` which events of a batch it may process (the gate's verdict, given at the
    last point before the state); acks count only for admitted records.
    """

    _gate: OffsetGate | None = None
    _guard: AckGuard | None = None
    _fetch_epoch = 0
    _positions_checked_at = 0.0
    _changelogs: frozenset[str] | None = None
    _epochs: weakref.WeakKeyDictionary[Message, int] | None = None

    @property
    def offset_gate(self) -> OffsetGate:
        if self._gate is None:
            self._gate = OffsetGate()
        return self._gate

    @property
    def fetch_epochs(self) -> weakref.WeakKeyDictionary[Message, int]:
        """The gate epoch each stream record's fetch started in (weak: gone with the record)."""
        if self._epochs is None:
            self._epochs = weakref.WeakKeyDictionary()
        return self._epochs

    @property
    def ack_guard(self) -> AckGuard:
        if self._guard is None:
            self._guard = AckGuard()
        return self._guard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _ReadOffsets(self._is_stream_topic)

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _is_stream_topic(self, topic: str) -> bool:
        # Tables are registered before the consumer starts; Faust would rebuild this set on every call.
        if self._changelogs is None:
            self._changelogs = frozenset(self.app.tables.changelog_topics)
        return topic not in self._changelogs

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek after an assignment; the gate learns where each stream partition starts."""
        offsets = await super().seek_to_committed()
        self.offset_gate.sought({tp: off for tp, off in offsets.items() if self._is_stream_topic(tp.topic)},
                                time.monotonic())
        return offsets

    async def _seek(self, partition: TP, offset: int) -> None:
        """aiokafka's seek, run on the consumer thread, where Faust makes its other calls that change
        aiokafka's state (fetches, commits, ``seek_to_committed``, ``seek_wait``).

        Faust calls this one from the worker's event loop thread directly. aiokafka's seek deletes the
        partition from its fetcher's record buffer while the consumer thread may be inside
        ``fetched_records``, which reads and deletes in that same dict: the thread then fails with
        ``KeyError(TopicPartition(...))``, the Fetcher service crashes and the worker exits (seen in 3 of
        7 runs of the join/leave fault test with a faster drain loop, which puts the offset gate's
        re-seeks right inside fetches).
        On the consumer thread's loop the two cannot interleave: a seek waits for the fetcher's next
        suspension point (the method queue has a second worker, so a pending fetch does not block it).
        """
        thread = self._thread

        async def seek_on_thread() -> None:  # called, and so run, by the consumer thread's loop
            thread.seek(partition, offset)

        await thread.call_thread(seek_on_thread)

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        if self._is_stream_topic(partition.topic):
            self.offset_gate.sought({partition: offset}, time.monotonic())

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.offset_gate.forget(revoked)
        await super().on_partitions_revoked(revoked)

    def ack(self, message: Message) -> bool:
        """Faust's ack, refused for a stream record the agent was not handed (see :mod:`app.ack_guard`)."""
        if self._is_stream_topic(message.topic) and not self.ack_guard.allows(message):
            message.acked = True  # done with, as far as waiting for acks goes; never committed
            return False
        return super().ack(message)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """One fetch from aiokafka: the gate learns its epoch and where each stream partition began.

        Here, before Faust's getmany can drop anything: the first record of a fetch that started
        after a re-seek says whether the expected offset exists (see ``OffsetGate.fetched``).
        """
        gate = self.offset_gate
        self._fetch_epoch = epoch = gate.epoch
        records = await super()._getmany(active_partitions, timeout)
        for tp, messages in records.items():
            if messages and self._is_stream_topic(tp.topic):
                gate.fetched(tp, messages[0].offset, epoch)
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        gate, epoch_of = self.offset_gate, self.fetch_epochs
        async for tp, message in super().getmany(timeout):
            if self._is_stream_topic(tp.topic):
                epoch = self._fetch_epoch  # set by this getmany's fetch (_getmany) before its first record
                if gate.stale(tp, epoch):
                    # Fetched before a re-seek of tp: dropped here, or Faust's read offset would move
                    # past the re-seek and its drain loop would discard the records fetched again.
                    continue
                epoch_of[message] = epoch
            yield tp, message
        now = time.monotonic()
        if now - self._positions_checked_at >= POSITION_CHECK_S:
            self._positions_checked_at = now
            await self._check_positions(now)

    async def admit_events(self, events: Sequence[Any]) -> list[Any]:
        """The events of a batch the agent may process, in order; re-seeks a partition with a gap."""
        gate, guard, epoch_of = self.offset_gate, self.ack_guard, self.fetch_epochs
        if not self.started:  # Faust's agent test context: events put by hand, no fetches, no seeks
            for event in events:
                guard.handed(event.message)
            return list(events)
        now = time.monotonic()
        admitted = []
        for event in events:
            message = event.message
            if not self._is_stream_topic(message.topic):
                admitted.append(event)
                continue
            tp, accepted = message.tp, gate.accepted_gaps
            expected = gate.expected(tp)
            verdict = gate.admit(tp, message.offset, epoch_of.get(message, 0), now)
            if verdict is Verdict.DELIVER:
                if gate.accepted_gaps > accepted and expected is not None:
                    # A real hole (transaction markers): Faust may commit across it, as its own drain
                    # loop would have let it (its gap bookkeeping is off for stream partitions here).
                    await self._add_gap(tp, expected, message.offset - 1)
                guard.handed(message)
                admitted.append(event)
            elif verdict is Verdict.RESEEK:
                await self._seek_back(message.tp, f"offset {message.offset} handed to the agent", now)
        return admitted

    async def _check_positions(self, now: float) -> None:
        """Seek back a partition whose position passed records that never reached the agent (a tail loss)."""
        gate = self.offset_gate
        for tp in self.assignment():
            if gate.expected(tp) is None:
                continue
            try:
                position = await self._thread.position(tp)
            except Exception as exc:  # noqa: BLE001 - revoked meanwhile: the next assignment seeks it anyway
                logger.debug("no position for %s: %r", tp, exc)
                continue
            expected, accepted = gate.expected(tp), gate.accepted_gaps
            if gate.check_position(tp, position, now):
                await self._seek_back(tp, f"position {position}", now)
            elif gate.accepted_gaps > accepted and expected is not None and position is not None:
                await self._add_gap(tp, expected, position - 1)  # a hole at the end: committable

    async def _seek_back(self, tp: TP, what: str, now: float) -> None:
        expected = self.offset_gate.reseeking(tp, now)
        logger.warning("%s: %s where offset %d was expected next; seeking back to it", tp, what, expected)
        await super().seek(tp, expected)


class FetchWaitTransport(Transport):
    """The aiokafka transport whose stream consumer honours ``app.fetch_max_wait_ms``."""

    Consumer = _FetchWaitConsumer


class WorkerApp(faust.App):
    """``faust.App`` whose Kafka consumer waits at most ``fetch_max_wait_ms`` per fetch.

    Its agent must pass each batch through :meth:`admit` before processing it: on the Kafka
    transport only admitted records are ever committed.
    """

    fetch_max_wait_ms: int | None = None

    async def admit(self, events: Sequence[Any]) -> list[Any]:
        """The events of a batch to process: in offset order per partition, none twice, none missing."""
        admit_events = getattr(self.consumer, "admit_events", None)
        return await admit_events(events) if admit_events is not None else list(events)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        """Faust's services, without its Monitor sensor among the sensors.

        The Monitor keeps Faust's own statistics (per message, per stream event, per table
        write and per send: a dictionary update or a timestamp each), which cost the worker
        ~5 us a tick in the profile and which nothing here serves: the worker's metrics are
        its Prometheus collectors (app/metrics.py). ``app.monitor`` still exists for the few
        places in Faust that call it directly.
        """
        services = super().on_init_dependencies()
        if self.monitor in self.sensors:
            self.sensors.remove(self.monitor)
        return services

    def _new_transport(self) -> TransportT:
        transport_cls = by_url(self.conf.broker_consumer[0])
        if transport_cls is Transport:  # kafka:// (aiokafka); any other driver is left as Faust builds it
            transport_cls = FetchWaitTransport
        return transport_cls(self.conf.broker_consumer, self)
