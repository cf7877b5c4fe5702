"""Only records the agent was handed may advance committed offsets (Faust acks the ones it skips)."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from app.ack_guard import AckGuard
from app.factory import create_app
from app.settings import Settings


def _message(topic: str, offset: int, partition: int = 0) -> ConsumerMessage:
    return ConsumerMessage(topic, partition, offset, 1_700_000_000.0, 0, [], b"k", b"v", None)


def test_guard_allows_handed_records_only() -> None:
    guard = AckGuard()
    handed, skipped = _message("ticks", 1), _message("ticks", 2)
    guard.handed(handed)
    assert guard.allows(handed)
    assert not guard.allows(skipped)
    assert guard.refused == 1


def test_guard_holds_no_message_alive() -> None:
    guard = AckGuard()
    for offset in range(1000):
        guard.handed(_message("ticks", offset))
    gc.collect()
    assert len(guard._handed) == 0  # weak references: the worker's memory does not grow with the stream


def test_only_admitted_records_move_the_committed_offset() -> None:
    """Faust's own commit arithmetic, with the worker's consumer: the gate admits 10 and 11 (9 is a
    stale duplicate); Faust acks 12 and 13 too (records it skipped at a rebalance), which without
    the guard would make 14 committable."""

    async def scenario() -> tuple[int | None, list[int], list[bool], int]:
        settings = Settings()
        app = create_app(settings, "kafka://127.0.0.1:9")  # nothing is contacted
        app.topics.add(app.topic(settings.ticks_topic))
        await app.topics._update_indices()  # what Faust does when the agent subscribes: acks on for the topic
        consumer = app.consumer
        consumer._started.set()  # as if running (not started, it is Faust's agent test context: no gating)
        tp = TP(settings.ticks_topic, 0)
        consumer.offset_gate.sought({tp: 10}, 0.0)
        messages = {o: _message(settings.ticks_topic, o) for o in (9, 10, 11, 12, 13)}
        admitted = await app.admit([SimpleNamespace(message=messages[o]) for o in (9, 10, 11)])
        results = [consumer.ack(m) for m in messages.values()]
        assert all(m.acked for m in messages.values())  # nothing waits for the refused ones at a rebalance
        return consumer._new_offset(tp), [e.message.offset for e in admitted], results, consumer.ack_guard.refused

    new_offset, admitted, results, refused = asyncio.run(scenario())
    assert admitted == [10, 11]
    assert results == [False, True, True, False, False]
    assert new_offset == 12
    assert refused == 3
