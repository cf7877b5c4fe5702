"""Faust's aiokafka transport with two changes: the consumer's fetch wait, and no records before the seek.

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from faust.transport import by_url
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message, TransportT

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


class _FetchWaitConsumer(Consumer):
    _gate: OffsetGate | None = None
    _fetch_epoch = 0
    _positions_checked_at = 0.0

    @property
    def offset_gate(self) -> OffsetGate:
        if self._gate is None:
            self._gate = OffsetGate()
        return self._gate

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek after an assignment; the gate learns where each stream partition starts."""
        offsets = await super().seek_to_committed()
        self.offset_gate.sought({tp: off for tp, off in offsets.items() if not self._is_changelog_tp(tp)})
        return offsets

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        if not self._is_changelog_tp(partition):
            self.offset_gate.sought({partition: offset})

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.offset_gate.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def _wait_next_records(self, timeout: float) -> Any:
        self._fetch_epoch = self.offset_gate.epoch  # the records of this fetch are judged by it
        return await super()._wait_next_records(timeout)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        gate = self.offset_gate
        changelogs = self.app.tables.changelog_topics  # once per fetch: Faust builds this set per call
        async for tp, message in super().getmany(timeout):
            if tp.topic in changelogs:  # recovery seeks and reads changelogs itself
                yield tp, message
                continue
            verdict = gate.admit(tp, message.offset, self._fetch_epoch)
            if verdict is Verdict.DELIVER:
                yield tp, message
            elif verdict is Verdict.RESEEK:
                await self._seek_back(tp, f"offset {message.offset} fetched")
        now = time.monotonic()
        if now - self._positions_checked_at >= POSITION_CHECK_S:
            self._positions_checked_at = now
            await self._check_positions()

    async def _check_positions(self) -> None:
        """Seek back a partition whose position passed records that were never delivered (a tail drop)."""
        gate, epoch = self.offset_gate, self._fetch_epoch
        for tp in self.assignment():
            if gate.expected(tp) is None:
                continue
            try:
                position = await self._thread.position(tp)
            except Exception as exc:  # noqa: BLE001 - revoked meanwhile: the next assignment seeks it anyway
                logger.debug("no position for %s: %r", tp, exc)
                continue
            if gate.check_position(tp, position, epoch):
                await self._seek_back(tp, f"position {position}")

    async def _seek_back(self, tp: TP, what: str) -> None:
        expected = self.offset_gate.reseeking(tp)
        logger.warning("%s: %s where offset %d was expected next; seeking back to it", tp, what, expected)
        await super().seek(tp, expected)


class FetchWaitTransport(Transport):
    """The aiokafka transport whose stream consumer honours ``app.fetch_max_wait_ms``."""

    Consumer = _FetchWaitConsumer


class WorkerApp(faust.App):
    """``faust.App`` whose Kafka consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> TransportT:
        transport_cls = by_url(self.conf.broker_consumer[0])
        if transport_cls is Transport:  # kafka:// (aiokafka); any other driver is left as Faust builds it
            transport_cls = FetchWaitTransport
        return transport_cls(self.conf.broker_consumer, self)
