"""Faust's aiokafka transport with one knob it does not expose: the consumer's fetch wait.

faust-streaming builds its worker consumer with ``fetch_max_wait_ms=1500`` hard-coded
(``faust/transport/drivers/aiokafka.py``). Against Kafka that only bounds idle polls, but the
embedded broker (Tansu 0.6) sleeps about half the remaining wait after every fetch, even one
that found data, so each fetch answered ~750 ms late. The thread below builds the consumer the
way Faust does and then sets the wait, which aiokafka reads when the consumer starts.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport import by_url
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TransportT


class _FetchWaitConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka passes this to its Fetcher in start(), which runs after this returns.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _FetchWaitConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)


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
