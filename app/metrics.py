"""Prometheus metrics, created per app on an injected registry (tests get a fresh one)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Batch processing time: sub-millisecond for small batches up to a second for a full
# 10k-tick batch with model scoring; end-to-end spans broker and batching delays.
MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


class PsutilCollector(Collector):
    """RSS, CPU and open files of this worker, read with psutil at scrape time.

    ``cpu_percent`` is measured between two scrapes (psutil keeps the previous reading), so
    the first scrape after start reports 0.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.proc = psutil.Process(os.getpid())
        self.proc.cpu_percent(None)  # prime the interval measurement

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        p = self.prefix
        with self.proc.oneshot():
            mem = self.proc.memory_info()
            cpu = self.proc.cpu_times()
            yield GaugeMetricFamily(f"{p}_process_rss_bytes", "Resident memory of the worker", value=mem.rss)
            yield CounterMetricFamily(f"{p}_process_cpu_seconds", "CPU time (user + system) of the worker",
                                      value=cpu.user + cpu.system)
            yield GaugeMetricFamily(f"{p}_process_cpu_percent", "CPU use since the previous scrape (100 = one core)",
                                    value=self.proc.cpu_percent(None))
            yield GaugeMetricFamily(f"{p}_process_threads", "Threads of the worker", value=self.proc.num_threads())


class GateCounts(Protocol):
    """What :class:`OffsetGateCollector` reads (``app.offset_gate.OffsetGate`` has it)."""

    skipped: int
    reseeks: int
    accepted_gaps: int


class RefusedCount(Protocol):
    """What :class:`OffsetGateCollector` reads of ``app.ack_guard.AckGuard``."""

    refused: int


class OffsetGateCollector(Collector):
    """The stream consumer's offset-order gate counters, read at scrape time.

    The gate lives in the consumer Faust builds (``app.transport``); reading it through a callable
    keeps the transport free of metrics. Re-seeks are the sign of Faust's out-of-order delivery
    around rebalances being caught; a steady climb outside rebalances deserves a look.
    """

    def __init__(self, prefix: str, gate: Callable[[], GateCounts | None],
                 ack_guard: Callable[[], RefusedCount | None] | None = None) -> None:
        self.prefix = prefix
        self.gate = gate
        self.ack_guard = ack_guard

    def collect(self) -> Iterator[CounterMetricFamily]:
        p = self.prefix
        guard = self.ack_guard() if self.ack_guard is not None else None
        if guard is not None:
            yield CounterMetricFamily(f"{p}_acks_refused", "Acks of stream records the agent never got (Faust "
                                      "skipped them during a rebalance): not committed", value=guard.refused)
        gate = self.gate()
        if gate is None:
            return
        yield CounterMetricFamily(f"{p}_offset_gate_skipped", "Fetched stream records dropped as stale or unsought "
                                  "(they come again)", value=gate.skipped)
        yield CounterMetricFamily(f"{p}_offset_gate_reseeks", "Partitions sought back to the next expected offset "
                                  "after a gap in delivery", value=gate.reseeks)
        yield CounterMetricFamily(f"{p}_offset_gate_accepted_gaps", "Offset holes confirmed by a re-fetch "
                                  "(transaction markers, compaction)", value=gate.accepted_gaps)


class Metrics(NamedTuple):
    registry: CollectorRegistry
    ticks_in: Counter
    ticks_processed: Counter
    ticks_rejected: Counter
    dead_letters: Counter
    ticks_forwarded: Counter
    ticks_redelivered: Counter
    batches: Counter
    batch_ms: Histogram
    end_to_end_ms: Histogram
    consumer_lag: Gauge
    alerts: Counter
    alert_votes: Counter
    detector_fires: Counter
    symbols: Gauge
    model_info: Gauge
    model_loads: Counter
    admin_requests: Counter
    cache_lookups: Counter
    redis_up: Gauge
    redis_errors: Counter
    redis_writes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None, prefix: str = "cryptotrace",
               offset_gate: Callable[[], GateCounts | None] | None = None,
               ack_guard: Callable[[], RefusedCount | None] | None = None) -> Metrics:
        r = registry or CollectorRegistry()
        ProcessCollector(registry=r)  # process_* (from /proc): what standard dashboards expect
        r.register(PsutilCollector(prefix))
        if offset_gate is not None:
            r.register(OffsetGateCollector(prefix, offset_gate, ack_guard))
        return cls(
            registry=r,
            ticks_in=Counter(f"{prefix}_ticks_in", "Valid ticks decoded from input records", registry=r),
            ticks_processed=Counter(f"{prefix}_ticks_processed", "Ticks folded into state", registry=r),
            ticks_rejected=Counter(
                f"{prefix}_ticks_rejected", "Input records sent to the dead-letter topic", ["reason"], registry=r
            ),
            dead_letters=Counter(
                f"{prefix}_dead_letters", "Records written to the dead-letter topic", ["reason"], registry=r
            ),
            ticks_forwarded=Counter(
                f"{prefix}_ticks_forwarded", "Ticks re-keyed by symbol (producer did not key them)", registry=r
            ),
            ticks_redelivered=Counter(
                f"{prefix}_ticks_redelivered", "Ticks skipped as already applied (redelivery)", registry=r
            ),
            batches=Counter(f"{prefix}_batches", "Micro-batches processed", registry=r),
            batch_ms=Histogram(f"{prefix}_batch_processing_ms", "Processing time per batch", buckets=MS_BUCKETS,
                               registry=r),
            end_to_end_ms=Histogram(
                f"{prefix}_end_to_end_ms", "Kafka record timestamp to its alerts sent and state written",
                buckets=MS_BUCKETS, registry=r,
            ),
            consumer_lag=Gauge(
                f"{prefix}_consumer_lag", "Records behind the partition's high watermark after the last batch",
                ["topic", "partition"], registry=r,
            ),
            alerts=Counter(f"{prefix}_alerts", "Alerts published", ["severity", "rule"], registry=r),
            alert_votes=Counter(
                f"{prefix}_alert_votes", "Ensemble members voting for a published alert", ["detector"], registry=r
            ),
            detector_fires=Counter(
                f"{prefix}_detector_fires", "Scored ticks on which a member's probability was >= 0.5", ["detector"],
                registry=r,
            ),
            symbols=Gauge(f"{prefix}_symbols_cached", "Symbol snapshots held in memory", registry=r),
            model_info=Gauge(f"{prefix}_model_info", "Model version in use (value 1)", ["version"], registry=r),
            model_loads=Counter(
                f"{prefix}_model_loads", "Model versions loaded from the registry, by result", ["result"], registry=r
            ),
            admin_requests=Counter(
                f"{prefix}_admin_requests", "Requests to the mutating endpoints, by endpoint and outcome",
                ["endpoint", "outcome"], registry=r,
            ),
            cache_lookups=Counter(
                f"{prefix}_cache_lookups", "Dashboard cache reads by where they were answered (lru, redis, miss)",
                ["kind", "result"], registry=r,
            ),
            redis_up=Gauge(f"{prefix}_redis_up", "1 while Redis answers, 0 while degraded", registry=r),
            redis_errors=Counter(f"{prefix}_redis_errors", "Failed Redis operations", ["op"], registry=r),
            redis_writes=Counter(f"{prefix}_redis_writes", "Batched Redis writes (one pipeline per batch)", registry=r),
        )
