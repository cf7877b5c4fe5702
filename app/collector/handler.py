"""One received frame, end to end but without I/O: parse, count, de-duplicate, detect gaps.

:class:`FeedHandler` is the collector's hot path (the benchmark measures exactly this); the
connection feeds it frames and the sink (the Kafka batcher in production) gets the ticks.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from app.collector.formats import ExchangeFormat, Frame
from app.collector.gaps import DUPLICATE, GapTracker
from app.collector.metrics import CollectorMetrics
from models.ticks import Tick

logger = logging.getLogger(__name__)

#: Receives the ticks of one frame, in exchange order. Must not block (it runs in the read loop).
Sink = Callable[[list[Tick]], None]


def _log_now(n: int) -> bool:
    """Log the 1st..10th occurrence, then every 1000th: a broken feed must not flood the log."""
    return n <= 10 or n % 1000 == 0


class FeedHandler:
    """Turns frames of one exchange into ticks for ``sink``; counts everything it sees.

    Parameters
    ----------
    fmt : ExchangeFormat
        The exchange's normaliser.
    sink : callable
        Gets each frame's new ticks (duplicates removed).
    metrics : CollectorMetrics
    gaps : GapTracker, optional
        Shared by every connection of the exchange (one symbol lives on one connection, but a
        symbol moves to a fresh connection on reconnect and its last id must move with it).
    clock : callable
        Wall-clock seconds (injected so that lag is testable).
    """

    def __init__(self, fmt: ExchangeFormat, sink: Sink, metrics: CollectorMetrics, *,
                 gaps: GapTracker | None = None, clock: Callable[[], float] = time.time) -> None:
        self.fmt = fmt
        self.sink = sink
        self.metrics = metrics
        self.gaps = gaps if gaps is not None else GapTracker()
        self.clock = clock
        ex = fmt.name
        self._stats = metrics.stats(ex)  # per-frame figures: plain ints (see app.collector.metrics)
        # Bound label children once: .labels() is a dict lookup under a lock, per call.
        self._dups = metrics.duplicates.labels(ex)
        self._gaps = metrics.gaps.labels(ex)
        self._missing = metrics.missing_trades.labels(ex)
        self._lag = self._stats.receive_lag
        self._invalid_seen: collections.Counter[str] = collections.Counter()
        self._gap_count = 0

    def handle(self, raw: str | bytes) -> Frame:
        """Process one text frame; returns it so the connection can act on its kind."""
        stats = self._stats
        stats.frames += 1
        frame = self.fmt.parse(raw)
        stats.kinds[frame.kind] += 1
        if frame.invalid:
            self._count_invalid(frame, raw)
        if frame.trades:
            self._accept(frame)
        elif frame.kind == "error":
            logger.warning("%s: the exchange reported an error: %s", self.fmt.name, frame.detail)
        return frame

    def _accept(self, frame: Frame) -> None:
        now_ms = self.clock() * 1000.0
        out: list[Tick] = []
        for tick, first_id in frame.trades:
            last_id = tick.trade_id if tick.trade_id is not None else first_id
            missing = self.gaps.check(tick.symbol, first_id, last_id)
            if missing:
                if missing == DUPLICATE:
                    self._dups.inc()
                    continue
                self._gaps.inc()
                self._missing.inc(missing)
                self._gap_count += 1
                if _log_now(self._gap_count):  # a reconnect of 1024 symbols must not log 1024 lines
                    logger.warning("%s: trade-id gap #%d on %s: %d trade(s) missed before id %d",
                                   self.fmt.name, self._gap_count, tick.symbol, missing, first_id)
            self._lag.observe(now_ms - tick.timestamp)
            out.append(tick)
        self._stats.trades += len(frame.trades)
        if out:
            self.sink(out)

    def _count_invalid(self, frame: Frame, raw: str | bytes) -> None:
        for reason, detail in frame.invalid:
            self.metrics.invalid.labels(self.fmt.name, reason).inc()
            self._invalid_seen[reason] += 1
            n = self._invalid_seen[reason]
            if _log_now(n):
                text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
                logger.warning("%s: invalid frame #%d (%s: %s): %.200s", self.fmt.name, n, reason, detail, text)
