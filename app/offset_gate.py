"""Deliver each stream partition's records in offset order, starting where the partition was sought.

Why this exists: the worker's state records, per symbol, the highest Kafka offset it has applied, so a
redelivered record is skipped. That is exact only if a partition's records reach the agent in offset
order. faust-streaming 0.15.3 does not guarantee it around a rebalance (found by the join/leave fault
test, which lost ticks with it):

* its recovery resumes the stream partitions and only *then* seeks them to their committed offsets,
  while the fetcher runs: records come from wherever aiokafka's position happened to be;
* a fetch that returns while a partition is paused, or while the flow stops, is dropped by Faust after
  aiokafka has already moved its position past it;
* a batch fetched before a seek is still handed out after the seek.

So the worker saw offsets 8082.. right after seeking to 8043, or 4569.. before being sent back to
3600..; the skipped-as-redelivered records were lost. The gate makes the order a checked invariant:

* a partition delivers nothing until it has been sought (committed offsets after an assignment);
* then only the expected offset passes; an older one is a stale duplicate and is skipped;
* a newer one is a gap: the partition is sought back to the expected offset and the record skipped.
  Kafka offsets can have legitimate holes (transaction markers, compaction, retention), so a gap is
  accepted when a fetch *started after* that re-seek lands on it again.

A record dropped at the tail of a partition is followed by no record that could show the gap, so the
consumer also compares, now and then, aiokafka's position with the expected offset
(:meth:`OffsetGate.check_position`): ahead of it with nothing delivered means records were lost in
between, and the partition is sought back the same way.

Skipped records are never acked, so nothing is committed past them; the seek brings them back.
Pure bookkeeping (no Faust, no I/O): the consumer in :mod:`app.transport` performs the seeks.
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
    epoch: int  # the seek epoch of the re-seek; only a fetch started later may confirm the gap


class OffsetGate:
    """Per-partition expected next offset; ``admit`` says what to do with each fetched record."""

    def __init__(self) -> None:
        self._expected: dict[Hashable, int] = {}
        self._gaps: dict[Hashable, _Gap] = {}
        self.epoch = 0  # bumped by every seek; a fetch remembers the epoch it started in
        self.skipped = 0
        self.reseeks = 0
        self.accepted_gaps = 0

    def sought(self, positions: Mapping[Hashable, int | None]) -> None:
        """Partitions were sought (``None``: no committed offset; the first record starts it)."""
        self.epoch += 1
        for tp, offset in positions.items():
            self._expected[tp] = ANY if offset is None or offset < 0 else offset
            self._gaps.pop(tp, None)

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked: they deliver nothing until sought again."""
        for tp in tps:
            self._expected.pop(tp, None)
            self._gaps.pop(tp, None)

    def expected(self, tp: Hashable) -> int | None:
        """The next offset ``tp`` may deliver (``ANY`` = whatever comes first; None = not sought)."""
        return self._expected.get(tp)

    def admit(self, tp: Hashable, offset: int, fetch_epoch: int) -> Verdict:
        """The verdict on a record of ``tp`` at ``offset``, from a fetch started in ``fetch_epoch``."""
        expected = self._expected.get(tp)
        if expected is None:
            self.skipped += 1
            return Verdict.SKIP
        if expected == ANY or offset == expected:
            return self._deliver(tp, offset)
        if offset < expected:
            self.skipped += 1
            return Verdict.SKIP
        gap = self._gaps.get(tp)
        if gap is not None and gap.expected == expected:
            if fetch_epoch >= gap.epoch:
                self.accepted_gaps += 1  # fetched again from the expected offset: a real hole
                return self._deliver(tp, offset)
            self.skipped += 1  # the rest of a batch fetched before the re-seek
            return Verdict.SKIP
        self.reseeks += 1
        return Verdict.RESEEK

    def check_position(self, tp: Hashable, position: int | None, fetch_epoch: int) -> bool:
        """True when ``tp`` must be sought back: the consumer's position passed records never delivered.

        Call it between fetches, when every record fetched so far has been through :meth:`admit`.
        A position still ahead after a re-seek and a later fetch is a hole at the end (a transaction
        marker, say): it becomes the expected offset.
        """
        expected = self._expected.get(tp)
        if position is None or expected is None or expected == ANY or position <= expected:
            return False
        gap = self._gaps.get(tp)
        if gap is not None and gap.expected == expected and fetch_epoch >= gap.epoch:
            self.accepted_gaps += 1
            self._expected[tp] = position
            self._gaps.pop(tp, None)
            return False
        self.reseeks += 1
        return True

    def reseeking(self, tp: Hashable) -> int:
        """Record the re-seek the consumer is about to make; returns the offset to seek to."""
        expected = self._expected[tp]
        self.epoch += 1
        self._gaps[tp] = _Gap(expected, self.epoch)
        return expected

    def _deliver(self, tp: Hashable, offset: int) -> Verdict:
        self._expected[tp] = offset + 1
        self._gaps.pop(tp, None)
        return Verdict.DELIVER
