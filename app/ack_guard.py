"""Commit only what the agent was handed: Faust acks stream records it skipped.

Why this exists: faust-streaming 0.15.3's stream loop *skips* a record that comes out of the
channel while flow control is suspended (a rebalance is under way) or whose generation is not the
consumer's current one, and it *acks* the skipped record "otherwise the lag would increase"
(``faust/streams.py``). The offset gate (:mod:`app.offset_gate`) also holds back records, and
Faust's ``take_events`` acks every event of a batch, whatever happened to it. An ack makes an
offset committable, and Faust's commit passes over a one-record hole at the head of what was acked
(``Consumer._new_offset`` tests ``> 1``): the next owner of the partition then starts after a
record no worker applied. The join/leave fault test lost one 8-tick record that way (a record that
vanished on its way to the agent; the gate now re-seeks for it, and this guard keeps the acks of
what came after it from being committed meanwhile).

The guard keeps a weak set of the messages the gate admitted to the agent; the consumer
(:mod:`app.transport`) records an ack only for those. A refused record stays uncommitted and is
read again by whoever owns the partition next, which is harmless: the state skips ticks it
already applied. Pure (weak references only, no Faust import).
"""

from __future__ import annotations

import weakref
from typing import Any


class AckGuard:
    """Which acks may advance committed offsets: those of records the agent was handed."""

    def __init__(self) -> None:
        self._handed: weakref.WeakSet[Any] = weakref.WeakSet()  # a message goes when its event is dropped
        self.refused = 0

    def handed(self, message: Any) -> None:
        """The agent is handed ``message``."""
        self._handed.add(message)

    def allows(self, message: Any) -> bool:
        """True when an ack of ``message`` may count towards the committed offset."""
        if message in self._handed:
            return True
        self.refused += 1
        return False
