"""Trade-id continuity per symbol: gaps (missed trades) and duplicates (replayed trades).

All three exchanges number the trades of one symbol consecutively, so a jump in the id is a
trade the collector never saw (a reconnect, a dropped frame, a server-side loss). Pure.
"""

from __future__ import annotations

#: Returned by :meth:`GapTracker.check` for a trade already seen (id <= the last one).
DUPLICATE = -1


class GapTracker:
    """Last trade id per symbol.

    Parameters
    ----------
    reset_window : int
        An id this far or further below the last one is not a replay but a renumbering (an
        exchange reset, or a symbol re-listed): the tracker starts over from it instead of
        dropping every following trade as a duplicate.

    Examples
    --------
    >>> g = GapTracker()
    >>> g.check("BTCUSDT", 10, 10), g.check("BTCUSDT", 11, 11), g.check("BTCUSDT", 15, 15)
    (0, 0, 3)
    >>> g.check("BTCUSDT", 15, 15) == DUPLICATE
    True
    """

    def __init__(self, reset_window: int = 1_000_000) -> None:
        self.reset_window = reset_window
        self._last: dict[str, int] = {}

    def check(self, symbol: str, first_id: int, last_id: int) -> int:
        """Record a trade covering ids ``first_id..last_id``; return the ids missed before it,
        0 when it follows on (or is the symbol's first), :data:`DUPLICATE` when already seen."""
        prev = self._last.get(symbol)
        if prev is not None and last_id <= prev:
            if prev - last_id < self.reset_window:
                return DUPLICATE
            prev = None  # renumbered: start over
        self._last[symbol] = last_id
        if prev is None:
            return 0
        missing = first_id - prev - 1
        return missing if missing > 0 else 0

    def last(self, symbol: str) -> int | None:
        return self._last.get(symbol)

    def __len__(self) -> int:
        return len(self._last)
