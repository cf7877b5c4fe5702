"""Deliver each stream partition's records in offset order, starting where the partition was sought.

Why this exists: the worker's state records, per symbol, the highest Kafka offset it has applied, so a
redelivered record is skipped. That is exact only if a partition's records reach the agent in offset
order, each once. faust-streaming 0.15.3 does not guarantee it around a rebalance (found by the
join/leave fault test, which lost ticks with it):

* its recovery resumes the stream partitions and only *then* seeks them to their committed offsets,
  while the fetcher runs: records come from wherever aiokafka's position happened to be;
* a fetch that returns while a partition is paused, or while the flow stops, is dropped by Faust after
  aiokafka has already moved its position past it;
* a batch fetched before a seek is still handed out after the seek;
* a record can vanish between the consumer and the agent: the worker that took a partition over
  sought it to 4844 and its agent's first batch began at 4845 (no gap in what the consumer fetched).

So the gate judges what the *agent* is handed, the last point before the state, and makes the order a
checked invariant:

* a partition delivers nothing until it has been sought (committed offsets after an assignment);
* then only the expected offset passes; an older one is a stale duplicate and is skipped;
* a newer one is a gap: the partition is sought back to the expected offset and the record skipped.
  Kafka offsets can have legitimate holes (transaction markers, compaction, retention), so a gap is
  accepted when the first record a fetch *started after* that re-seek returned (:meth:`fetched`,
  told by the consumer) is that newer one: nothing exists in between.

A record lost at the tail of a partition is followed by no record that could show the gap, so the
consumer also compares, now and then, aiokafka's position with the expected offset
(:meth:`OffsetGate.check_position`): ahead of it while nothing reached the agent for ``stall_s``
means records were lost on the way, and the partition is sought back the same way.

Skipped records are never acked (:mod:`app.ack_guard`), so nothing is committed past them; the seek
brings them back. Pure bookkeeping (no Faust, no I/O): the consumer in :mod:`app.transport` performs
the seeks.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

ANY = -1  # sought, but no committed offset: the first record that comes is the start


class Verdict(Enum):
    DELIVER = "deliver"
    SKIP = "skip"  # stale or not yet sought: drop it, a later fetch brings it again
    RESEEK = "reseek"  # a gap: seek back to the expected offset, drop this record


@dataclass(slots=True)
class _Gap:
    expected: int
    epoch: int  # the seek epoch of the re-seek; only a fetch started later tells what is there
    first: int | None = None  # the first offset such a fetch returned (> expected: a real hole)


class OffsetGate:
    """Per-partition expected next offset; ``admit`` says what to do with each record handed out.

    ``stall_s``: how long aiokafka's position may stay ahead of the expected offset with nothing
    admitted before the records in between count as lost (:meth:`check_position`). Records still
    on their way through Faust's queues arrive well within it.
    """

    def __init__(self, stall_s: float = 10.0) -> None:
        self.stall_s = stall_s
        self._expected: dict[Hashable, int] = {}
        self._gaps: dict[Hashable, _Gap] = {}
        self._moved_at: dict[Hashable, float] = {}  # when each partition last admitted, was sought or re-sought
        self.epoch = 0  # bumped by every seek; a fetch remembers the epoch it started in
        self.skipped = 0
        self.reseeks = 0
        self.accepted_gaps = 0

    def sought(self, positions: Mapping[Hashable, int | None], now: float) -> None:
        """Partitions were sought (``None``: no committed offset; the first record starts it)."""
        self.epoch += 1
        for tp, offset in positions.items():
            self._expected[tp] = ANY if offset is None or offset < 0 else offset
            self._gaps.pop(tp, None)
            self._moved_at[tp] = now

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked: they deliver nothing until sought again."""
        for tp in tps:
            self._expected.pop(tp, None)
            self._gaps.pop(tp, None)
            self._moved_at.pop(tp, None)

    def expected(self, tp: Hashable) -> int | None:
        """The next offset ``tp`` may deliver (``ANY`` = whatever comes first; None = not sought)."""
        return self._expected.get(tp)

    def admit(self, tp: Hashable, offset: int, fetch_epoch: int, now: float) -> Verdict:
        """The verdict on a record of ``tp`` at ``offset``, from a fetch started in ``fetch_epoch``."""
        expected = self._expected.get(tp)
        if expected is None:
            self.skipped += 1
            return Verdict.SKIP
        if expected == ANY or offset == expected:
            return self._deliver(tp, offset, now)
        if offset < expected:
            self.skipped += 1
            return Verdict.SKIP
        gap = self._gaps.get(tp)
        if gap is not None and gap.expected == expected:
            if fetch_epoch < gap.epoch:
                self.skipped += 1  # the rest of a batch fetched before the re-seek
                return Verdict.SKIP
            if gap.first is not None and gap.first > expected and offset == gap.first:
                self.accepted_gaps += 1  # the fetch from the expected offset began here: a real hole
                return self._deliver(tp, offset, now)
        self.reseeks += 1  # a gap; or, after a re-seek, the expected record was fetched and lost again
        return Verdict.RESEEK

    def stale(self, tp: Hashable, fetch_epoch: int) -> bool:
        """True for a record of ``tp`` from a fetch that started before ``tp``'s pending re-seek."""
        gap = self._gaps.get(tp)
        return gap is not None and fetch_epoch < gap.epoch

    def fetched(self, tp: Hashable, offset: int, fetch_epoch: int) -> None:
        """A fetch returned ``offset`` as the first record of ``tp`` (before anything could lose it)."""
        gap = self._gaps.get(tp)
        if gap is not None and gap.first is None and fetch_epoch >= gap.epoch:
            gap.first = offset

    def check_position(self, tp: Hashable, position: int | None, now: float) -> bool:
        """True when ``tp`` must be sought back: the consumer's position passed records never admitted.

        Only once nothing was admitted, sought or re-sought for ``stall_s``: until then the records
        in between may still be on their way to the agent. A position still ahead ``stall_s`` after
        a re-seek that fetched nothing is a hole at the end (a transaction marker, say): it becomes
        the expected offset.
        """
        expected = self._expected.get(tp)
        if position is None or expected is None or expected == ANY or position <= expected:
            return False
        if now - self._moved_at.get(tp, now) < self.stall_s:
            return False
        gap = self._gaps.get(tp)
        if gap is not None and gap.expected == expected and gap.first is None:
            self.accepted_gaps += 1
            self._expected[tp] = position
            self._gaps.pop(tp, None)
            self._moved_at[tp] = now
            return False
        self.reseeks += 1
        return True

    def reseeking(self, tp: Hashable, now: float) -> int:
        """Record the re-seek the consumer is about to make; returns the offset to seek to."""
        expected = self._expected[tp]
        self.epoch += 1
        self._gaps[tp] = _Gap(expected, self.epoch)
        self._moved_at[tp] = now
        return expected

    def _deliver(self, tp: Hashable, offset: int, now: float) -> Verdict:
        self._expected[tp] = offset + 1
        self._gaps.pop(tp, None)
        self._moved_at[tp] = now
        return Verdict.DELIVER
