"""Per-feature running maxima over a sliding event-time window: "is this a new extreme?".

A z-score says how rare a value is against the baseline's mean and variance; it cannot say that
the same rare value came yesterday at this hour, and the day before. A move that recurs (a daily
step in a metric, the open of a session, periodic spikes) keeps scoring high, and because the
statistical layer does not learn what it flags, it alarms every time. The statistical layer
therefore lets a lone-feature rule fire only when the tick's rule statistic (its z, or |z| for
two-sided features) exceeds every value of that statistic in the symbol's last ``window``: a new
extreme of the window, not merely a rare one. Rules on several features at once (pump signature,
volume burst) and the stale-price rule are not gated.

The window is kept in ``n_buckets`` event-time buckets of ``window_ms / n_buckets``: the limit of
a tick is the maximum over the ``n_buckets - 1`` buckets before its own and its own bucket so far,
so the window spans between ``(n_buckets - 1)/n_buckets`` and all of ``window_ms``. State is a
fixed ``n_buckets x features`` table whatever the tick rate, JSON-friendly, O(1) per tick (the
bucket maxima are combined once per bucket).

Examples
--------
>>> w = NoveltyWindow(features=1, window_ms=60_000, n_buckets=6)
>>> w.limits(0)[0] == EMPTY                 # nothing seen: everything is new
True
>>> w.push(0, [3.0]); w.push(10_000, [0.96])
>>> w.limits(15_000)[0], w.limits(65_000)[0]  # 3.0 until its bucket leaves the window
(3.0, 1.0)
>>> w.limits(200_000)[0] == EMPTY            # nothing left in the window
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

#: The limit of an empty window: below every rule statistic (z is clipped to +-50).
EMPTY: Final = -1e9
#: Values are kept rounded *up* to 1/QUANTUM: a new extreme must beat the old one by up to 1/8
#: sigma more, and the state stays short JSON ("12.375", not "12.371948302946"): it is written
#: with the symbol's snapshot after every batch.
QUANTUM: Final = 8.0


class NoveltyWindow:
    """Sliding-window maxima of ``features`` values per tick (see the module docstring)."""

    __slots__ = ("features", "window_ms", "n_buckets", "bucket_ms", "bucket", "ring", "prior", "lim")

    def __init__(self, features: int, window_ms: int, n_buckets: int = 12) -> None:
        if n_buckets < 2:
            raise ValueError(f"n_buckets must be >= 2, got {n_buckets}")
        if window_ms < n_buckets:
            raise ValueError(f"window_ms must be >= n_buckets, got {window_ms}")
        self.features = features
        self.window_ms = window_ms
        self.n_buckets = n_buckets
        self.bucket_ms = window_ms // n_buckets
        self.bucket: int | None = None  # id (t // bucket_ms) of the newest bucket written
        self.ring = [[EMPTY] * features for _ in range(n_buckets)]  # bucket id % n_buckets -> maxima
        self.prior = [EMPTY] * features  # maxima of the n_buckets - 1 buckets before self.bucket
        self.lim = [EMPTY] * features  # max(prior, newest bucket): the limits within self.bucket

    def _prior_of(self, b: int) -> list[float]:
        """Maxima of the buckets ``b - n + 1 .. b - 1`` that were written (older ones have left)."""
        out = [EMPTY] * self.features
        newest, n = self.bucket, self.n_buckets
        if newest is None:
            return out
        for k in range(max(b - n + 1, newest - n + 1), min(b - 1, newest) + 1):
            row = self.ring[k % n]
            out = [a if a > c else c for a, c in zip(out, row, strict=True)]
        return out

    def limits(self, t_ms: int) -> list[float]:
        """Per feature, the largest value (rounded up) pushed in the window of a tick at ``t_ms``; no mutation."""
        b = t_ms // self.bucket_ms
        if b == self.bucket:
            return self.lim
        if self.bucket is not None and b < self.bucket:  # a late tick: judged against the newest bucket
            return self.lim
        return self._prior_of(b)  # the first tick of a new bucket: once per bucket

    def push(self, t_ms: int, values: Sequence[float]) -> None:
        """Record one tick's values (``EMPTY`` for an unknown one)."""
        b = t_ms // self.bucket_ms
        n = self.n_buckets
        if self.bucket is None or b > self.bucket:
            self.prior = self._prior_of(b)
            for k in range(max(b - n + 1, (self.bucket if self.bucket is not None else b - n) + 1), b + 1):
                self.ring[k % n] = [EMPTY] * self.features  # buckets skipped over are empty
            self.bucket = b
            self.lim = list(self.prior)
        # A late tick (b < self.bucket) counts in the newest bucket: it was seen now.
        row, lim = self.ring[self.bucket % n], self.lim
        # Indexed, and math.ceil called by name: the compiled loop then reads floats and calls C's ceil
        # instead of going through an iterator and a Python-level function object.
        for i in range(len(values)):
            v = values[i]
            if v > row[i]:
                v = math.ceil(v * QUANTUM) / QUANTUM
                row[i] = v
                if v > lim[i]:
                    lim[i] = v

    def to_state(self) -> dict[str, Any]:
        return {"b": self.bucket, "ms": self.bucket_ms,
                "r": [[None if v == EMPTY else v for v in r] for r in self.ring]}

    @classmethod
    def from_state(cls, state: dict[str, Any], features: int, window_ms: int, n_buckets: int) -> NoveltyWindow:
        """Restore; a state of another shape (settings changed) starts an empty window."""
        w = cls(features, window_ms, n_buckets)
        ring = state.get("r")
        if state.get("b") is None or state.get("ms") != w.bucket_ms or not isinstance(ring, list) \
                or len(ring) != n_buckets or any(len(r) != features for r in ring):
            return w
        w.ring = [[EMPTY if v is None else float(v) for v in r] for r in ring]
        w.bucket = int(state["b"])
        w.prior = w._prior_of(w.bucket)
        newest = w.ring[w.bucket % n_buckets]
        w.lim = [a if a > c else c for a, c in zip(w.prior, newest, strict=True)]
        return w
