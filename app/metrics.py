"""Prometheus metrics, created per app on an injected registry (tests get a fresh one)."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Batch processing time: sub-millisecond for small batches up to a second for a full
# 10k-tick batch with model scoring; end-to-end spans broker and batching delays.
MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics(NamedTuple):
    registry: CollectorRegistry
    ticks_processed: Counter
    ticks_rejected: Counter
    ticks_forwarded: Counter
    ticks_redelivered: Counter
    batches: Counter
    batch_ms: Histogram
    end_to_end_ms: Histogram
    alerts: Counter
    alert_votes: Counter
    symbols: Gauge
    model_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None, prefix: str = "cryptotrace") -> Metrics:
        r = registry or CollectorRegistry()
        # RSS, CPU seconds, open fds of this worker (process_* metrics, read from /proc).
        ProcessCollector(registry=r)
        return cls(
            registry=r,
            ticks_processed=Counter(f"{prefix}_ticks_processed", "Ticks folded into state", registry=r),
            ticks_rejected=Counter(
                f"{prefix}_ticks_rejected", "Input records sent to the dead-letter topic", ["reason"], registry=r
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
                f"{prefix}_end_to_end_ms", "Kafka record timestamp to processed", buckets=MS_BUCKETS, registry=r
            ),
            alerts=Counter(f"{prefix}_alerts", "Alerts published", ["severity", "rule"], registry=r),
            alert_votes=Counter(
                f"{prefix}_alert_votes", "Ensemble members voting for a published alert", ["detector"], registry=r
            ),
            symbols=Gauge(f"{prefix}_symbols_cached", "Symbol snapshots held in memory", registry=r),
            model_info=Gauge(f"{prefix}_model_info", "Model version in use (value 1)", ["version"], registry=r),
        )
