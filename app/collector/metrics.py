"""Prometheus metrics of the collector, created on an injected registry (tests get a fresh one).

Every series carries an ``exchange`` label so that several collectors can share a registry
(and a dashboard) without their figures mixing.

Two kinds of series. Rare events (invalid frames, reconnects, gaps, drops) are ordinary
``prometheus_client`` counters. Figures touched for every frame or every tick (frames, trades,
ticks produced, the two lag histograms) live in :class:`HotStats`, plain integers read at scrape
time by a custom collector: a ``Counter.inc`` costs ~0.6 us and a ``Histogram.observe`` ~1.1 us
(a lock and a linear bucket scan), which was a third of the per-frame cost. All updates happen
on the event loop thread, and the scrape handler runs there too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import NamedTuple, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.collector.formats import FrameKind

# Exchange time to Kafka acknowledgement: a healthy feed sits in tens of milliseconds (network
# plus the batch linger); seconds mean backpressure or clock skew; a minute, a stalled producer.
LAG_MS_BUCKETS = (5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 30_000.0, 60_000.0)
FRAME_KINDS: tuple[str, ...] = get_args(FrameKind)


class LagHistogram:
    """A histogram as plain numbers: ``observe`` is one bisect and two additions.

    >>> h = LagHistogram((10.0, 100.0))
    >>> for v in (3, 10, 50, 500):
    ...     h.observe(v)
    >>> h.cumulative(), h.sum
    ([2, 3, 4], 563.0)
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LAG_MS_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bound >= value: Prometheus "le"
        self.sum += value

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for c in self.counts:
            total += c
            out.append(total)
        return out


class HotStats:
    """Per-exchange figures updated on the hot path (see the module docstring)."""

    __slots__ = ("frames", "kinds", "trades", "ticks_produced", "records_produced", "receive_lag", "kafka_lag")

    def __init__(self) -> None:
        self.frames = 0
        self.kinds = dict.fromkeys(FRAME_KINDS, 0)
        self.trades = 0
        self.ticks_produced = 0
        self.records_produced = 0
        self.receive_lag = LagHistogram()
        self.kafka_lag = LagHistogram()


class _HotCollector(Collector):
    def __init__(self, prefix: str, stats: dict[str, HotStats]) -> None:
        self.prefix = prefix
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        p, items = self.prefix, sorted(self.stats.items())
        frames = CounterMetricFamily(f"{p}_frames", "WebSocket text frames received", labels=["exchange"])
        kinds = CounterMetricFamily(f"{p}_frame_kinds", "Frames received by kind (trades, ack, heartbeat, pong, "
                                    "error, reconnect, invalid)", labels=["exchange", "kind"])
        trades = CounterMetricFamily(f"{p}_trades", "Valid trades normalised (before de-duplication)",
                                     labels=["exchange"])
        ticks = CounterMetricFamily(f"{p}_ticks_produced", "Ticks acknowledged by Kafka", labels=["exchange"])
        records = CounterMetricFamily(f"{p}_records_produced", "Kafka records (JSON arrays of ticks) acknowledged",
                                      labels=["exchange"])
        receive = HistogramMetricFamily(f"{p}_receive_lag_ms", "Exchange trade time to frame received (ms)",
                                        labels=["exchange"])
        kafka = HistogramMetricFamily(f"{p}_exchange_to_kafka_ms", "Exchange trade time to Kafka "
                                      "acknowledgement (ms)", labels=["exchange"])
        for ex, s in items:
            frames.add_metric([ex], s.frames)
            for kind, n in s.kinds.items():
                kinds.add_metric([ex, kind], n)
            trades.add_metric([ex], s.trades)
            ticks.add_metric([ex], s.ticks_produced)
            records.add_metric([ex], s.records_produced)
            for family, h in ((receive, s.receive_lag), (kafka, s.kafka_lag)):
                les = [floatToGoString(b) for b in h.bounds] + ["+Inf"]
                family.add_metric([ex], list(zip(les, map(float, h.cumulative()), strict=True)), h.sum)
        yield from (frames, kinds, trades, ticks, records, receive, kafka)


class CollectorMetrics(NamedTuple):
    registry: CollectorRegistry
    prefix: str
    hot: dict[str, HotStats]
    invalid: Counter
    reconnects: Counter
    connections: Gauge
    gaps: Counter
    missing_trades: Counter
    duplicates: Counter
    produce_errors: Counter
    ticks_dropped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None, prefix: str = "cryptotrace_collector",
               process: bool = True) -> CollectorMetrics:
        r = registry or CollectorRegistry()
        if process:  # RSS, CPU seconds, open fds of this process (process_*), from /proc
            ProcessCollector(registry=r)
        hot: dict[str, HotStats] = {}
        r.register(_HotCollector(prefix, hot))
        ex = ["exchange"]
        return cls(
            registry=r,
            prefix=prefix,
            hot=hot,
            invalid=Counter(f"{prefix}_invalid_frames", "Frames or trades that could not be used, by reason",
                            ["exchange", "reason"], registry=r),
            reconnects=Counter(f"{prefix}_reconnects", "Connections lost and retried, by cause",
                               ["exchange", "reason"], registry=r),
            connections=Gauge(f"{prefix}_connections", "WebSocket connections open", ex, registry=r),
            gaps=Counter(f"{prefix}_trade_id_gaps", "Jumps in a symbol's trade ids (missed trades)", ex,
                         registry=r),
            missing_trades=Counter(f"{prefix}_trades_missing", "Trade ids skipped over by the gaps", ex,
                                   registry=r),
            duplicates=Counter(f"{prefix}_duplicate_trades", "Trades dropped as already seen", ex, registry=r),
            produce_errors=Counter(f"{prefix}_produce_errors", "Ticks Kafka did not acknowledge", ex,
                                   registry=r),
            ticks_dropped=Counter(f"{prefix}_ticks_dropped", "Ticks dropped before Kafka (buffer full)", ex,
                                  registry=r),
        )

    def stats(self, exchange: str) -> HotStats:
        """The hot-path figures of ``exchange`` (created on first use)."""
        s = self.hot.get(exchange)
        if s is None:
            s = self.hot[exchange] = HotStats()
        return s

    def value(self, name: str, **labels: str) -> float:
        """Current value of one series (0 when it has no sample yet), e.g. ``value("frames_total",
        exchange="okx")``: for summaries and tests."""
        v = self.registry.get_sample_value(f"{self.prefix}_{name}", labels)
        return float(v or 0.0)

    def total(self, name: str, exchange: str) -> float:
        """A counter summed over all its other labels."""
        out = 0.0
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == f"{self.prefix}_{name}" and s.labels.get("exchange") == exchange:
                    out += s.value
        return out
