"""``cryptotrace replay``: re-consume a range of a ticks topic through the pipeline, isolated from live.

What makes a replay equal to live (tested end to end in ``tests/integration/test_replay.py``):

* the same code: records are decoded by :func:`app.codec.decode_ticks`, each tick gets the
  position the worker gives it (topic, partition, ``offset << 16 | index``), and micro-batches
  go through :meth:`models.pipeline.Pipeline.process` with the model and threshold chosen as
  the worker chooses them; alert records are encoded by the same :func:`app.codec.encode`;
* the same order per symbol: a symbol's ticks live on one partition (feeds key by symbol) and
  a partition is read in offset order. How partitions interleave does not matter: the state
  of a symbol depends only on its own ticks, and the pipeline's result does not depend on
  where micro-batches are cut (a property test in ``tests/models/test_pipeline.py``);
* the same model: ``--model-version`` pins the artifact whose version the live alerts carry.

Isolation: the replay has its own application id (``<app_id>-replay-<name>``, used as the Kafka
client id), keeps its state in its own memory, joins no consumer group (partitions are assigned
directly, so no offsets of the live group move) and publishes to its own alerts topic, which
may never be the live one. Nothing is written to the DLQ: rejected records are counted in the
summary instead.

Ranges are chosen per partition with Kafka's own tools: ``earliest``/``latest``, an offset, or
a time (ms, ISO-8601, or relative such as ``-7d``) resolved with ``offsets_for_times``, i.e.
against the records' Kafka timestamps (their produce time). ``--to`` is inclusive for times
and exclusive for offsets; ``latest`` means the end of each partition when the replay starts.
A replay from the middle of a topic starts with empty state unless ``--warmup`` gives it
history: the warm-up records are processed (state, cooldowns) but their alerts not published.
Parity with live is exact for ticks keyed by symbol; a record whose ticks are not on their
symbol's partition was re-keyed by the live worker through its internal topic and is processed
here in source order instead, which can differ.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from tqdm import tqdm

from app.backtest import Replay, ReportOptions, write_alerts, write_report
from app.codec import decode_ticks, encode
from app.feed import bootstrap_of
from app.tickfiles import TickTableBuilder, parse_time_ms, read_labels
from app.topics import ensure_topics_async
from models.errors import BadTickError, ConfigError
from models.pipeline import BatchResult, Pipeline, Position, SymbolSnapshot
from models.ticks import Tick

logger = logging.getLogger(__name__)

_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class Bound:
    """One end of a replay range."""

    kind: Literal["earliest", "latest", "time", "offset"]
    value: int = 0  # ms since the epoch (time) or an offset (offset)


def parse_bound(text: str, now_ms: int) -> Bound:
    """``earliest``, ``latest``/``now``, ``offset:N``, ms since the epoch, ISO-8601, or ``-7d``/``-36h``/``-30m``.

    >>> parse_bound("offset:42", 0), parse_bound("-1h", 7_200_000).value, parse_bound("2023-11-14T22:13:20Z", 0).value
    (Bound(kind='offset', value=42), 3600000, 1700000000000)
    """
    s = text.strip().lower()
    if s in ("earliest", "latest"):
        return Bound(s)  # type: ignore[arg-type]  # narrowed by the membership test
    if s == "now":
        return Bound("latest")
    if s.startswith("offset:"):
        n = s.removeprefix("offset:")
        if not n.isdigit():
            raise ValueError(f"offset must be a non-negative integer: {text!r}")
        return Bound("offset", int(n))
    rel = _RELATIVE.fullmatch(s)
    if rel:
        return Bound("time", now_ms - int(float(rel.group(1)) * _UNIT_S[rel.group(2)] * 1000))
    try:
        ms = parse_time_ms(text)
    except BadTickError:
        raise ValueError(f"not a replay bound: {text!r} (earliest, latest, offset:N, ms, ISO-8601 or -7d)") from None
    if isinstance(ms, float):
        raise ValueError(f"time must be whole milliseconds: {text!r}")
    return Bound("time", ms)


@dataclass(frozen=True)
class ReplayOptions:
    topic: str
    start: Bound
    end: Bound
    app_id: str  # the replay's own namespace
    alerts_topic: str
    live_alerts_topic: str  # refused as a target: a replay never writes where live alerts go
    labels: Path | None = None
    out: Path | None = None
    batch_size: int = 1000
    warmup_ms: int = 0
    progress: bool = True
    publish: bool = True  # False: process the range only (no alerts topic written, no report columns kept)

    def __post_init__(self) -> None:
        if self.alerts_topic in (self.live_alerts_topic, self.topic):
            raise ValueError(f"replay alerts topic {self.alerts_topic!r} is a live topic: choose another")
        if self.labels is not None and self.out is None:
            raise ValueError("--labels needs --out (where the report is written)")
        if self.warmup_ms and self.start.kind != "time":
            raise ValueError("--warmup needs --from as a time")
        if self.batch_size < 1 or self.warmup_ms < 0:
            raise ValueError("batch size must be >= 1 and warm-up >= 0")


@dataclass
class _Run:
    """What the replay accumulates: processed ticks and scores (for the report) and the alerts."""

    builder: TickTableBuilder = field(default_factory=TickTableBuilder)
    scores: list[float] = field(default_factory=list)
    lines: list[tuple[int, str, bytes]] = field(default_factory=list)
    alerts: list[tuple[str, int, float]] = field(default_factory=list)
    records: int = 0
    warmup_ticks: int = 0
    skipped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class _Cursor:
    """Where one partition's replay is: skipping to the start, warming up, live, or done.

    Ends are decided on the records themselves (offset, Kafka timestamp), not on the end offset
    the broker reports: that figure is a snapshot, and one Kafka-protocol broker (Tansu) reports
    the base offset of the last batch rather than the next offset. ``--to latest`` is the time
    the replay started; partitions with nothing newer are done once no partition has returned
    a record for ``IDLE_DONE_S`` (a per-partition idle clock would end a partition early while
    the fetches are busy with the others).
    """

    seek: int  # first offset to fetch
    skip_before_ts: int | None = None  # time start: skip until the first record at or after it
    live_from_ts: int | None = None  # warm-up: records are warm until the first at or after it
    end_offset: int | None = None  # exclusive
    end_ts: int | None = None  # inclusive
    live_from_offset: int | None = None
    last_offset: int | None = None
    done: bool = False

    def classify(self, rec: ConsumerRecord) -> str:
        """``skip``, ``warm``, ``live`` or ``end`` for the next record of the partition."""
        if (self.end_offset is not None and rec.offset >= self.end_offset) or (
                self.end_ts is not None and rec.timestamp > self.end_ts):
            self.done = True
            return "end"
        if self.skip_before_ts is not None:
            if rec.timestamp < self.skip_before_ts:
                return "skip"
            self.skip_before_ts = None
        if self.live_from_ts is not None:
            if rec.timestamp < self.live_from_ts:
                return "warm"
            self.live_from_ts = None
        if self.live_from_offset is None:
            self.live_from_offset = rec.offset
        self.last_offset = rec.offset
        return "live"


IDLE_DONE_S = 2.0


async def _cursors(consumer: AIOKafkaConsumer, tps: list[TopicPartition], opts: ReplayOptions,
                   started_ms: int) -> dict[TopicPartition, _Cursor]:
    first = await consumer.beginning_offsets(tps)
    cursors = {tp: _Cursor(seek=first[tp]) for tp in tps}
    start, end = opts.start, opts.end
    if start.kind == "offset":
        for tp, c in cursors.items():
            c.seek = max(start.value, first[tp])
    elif start.kind == "latest":
        for c in cursors.values():
            c.skip_before_ts = started_ms + 1  # nothing that was there when the replay started
    elif start.kind == "time":
        at = start.value - opts.warmup_ms
        found = await consumer.offsets_for_times(dict.fromkeys(tps, at))
        for tp, c in cursors.items():
            hit = found.get(tp)
            c.seek = first[tp] if hit is None else max(first[tp], hit.offset)
            if hit is None:  # no record that late: nothing from the seek point on but still scanned
                c.seek = (await consumer.end_offsets([tp]))[tp]
            c.skip_before_ts = at  # brokers may answer with a batch's base offset: skip to the record
            c.live_from_ts = start.value if opts.warmup_ms else None
    for c in cursors.values():
        if end.kind == "offset":
            c.end_offset = end.value
        else:
            c.end_ts = end.value if end.kind == "time" else started_ms
    return cursors


class TopicReplay:
    """One replay: range resolution, the consume loop, alert publishing."""

    def __init__(self, broker_url: str, opts: ReplayOptions, pipeline: Pipeline,
                 client: dict[str, Any] | None = None,
                 observer: Callable[[BatchResult, list[Tick]], None] | None = None) -> None:
        """``observer(result, ticks)`` sees every micro-batch's pipeline result (e.g. a model refit job)."""
        self.observer = observer
        self.bootstrap = bootstrap_of(broker_url)
        self.client = client or {}
        self.opts = opts
        self.pipeline = pipeline
        self.snapshots: dict[str, SymbolSnapshot] = {}
        self.run = _Run()
        self.ranges: dict[int, tuple[int | None, int | None]] = {}

    def _process(self, records: Sequence[ConsumerRecord], publish: bool) -> list[tuple[str, bytes]]:
        """One micro-batch: decode, position, pipeline; returns (symbol, encoded alert) when publishing."""
        run = self.run
        ticks, positions = [], []
        for rec in records:
            got, rejected = decode_ticks(rec.value)
            for bad in rejected:
                run.rejected[bad.reason] += 1
            base = rec.offset << 16
            for j, tick in enumerate(got):
                ticks.append(tick)
                positions.append(Position(rec.topic, rec.partition, base + j))
        if not ticks:
            return []
        result = self.pipeline.process(self.snapshots, ticks, positions)
        if self.observer is not None:
            self.observer(result, ticks)
        run.skipped += result.skipped
        for _, reason, _ in result.rejected:
            run.rejected[reason] += 1
        if not publish:
            run.warmup_ticks += len(ticks) - result.skipped - len(result.rejected)
            return []
        for tick, score in zip(ticks, result.scores, strict=True):
            if score is not None:
                run.builder.add_tick(tick)
                run.scores.append(score)
        out = []
        for a in result.alerts:
            record = encode(a.to_dict())  # once: the same bytes go to the topic and to alerts.jsonl
            run.lines.append((a.event_time, a.symbol, record))
            run.alerts.append((a.symbol, a.event_time, a.price))
            out.append((a.symbol, record))
        return out

    async def execute(self) -> float:
        """Consume the range and publish alerts; returns the seconds spent."""
        opts = self.opts
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    client_id=opts.app_id, fetch_max_wait_ms=100,
                                    max_partition_fetch_bytes=4 << 20, **self.client)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, client_id=opts.app_id, linger_ms=20, acks="all",
                                    **self.client)
        await consumer.start()
        await producer.start()
        try:
            await consumer.topics()  # loads cluster metadata
            parts = consumer.partitions_for_topic(opts.topic)
            if not parts:
                raise ConfigError(f"topic {opts.topic!r} does not exist")
            tps = [TopicPartition(opts.topic, p) for p in sorted(parts)]
            if opts.publish:
                await ensure_topics_async(self.bootstrap, [opts.alerts_topic], len(tps), self.client)
            consumer.assign(tps)
            cursors = await _cursors(consumer, tps, opts, int(time.time() * 1000))
            t0 = time.perf_counter()
            await self._loop(consumer, producer, cursors)
            await producer.flush()
            self.ranges = {tp.partition: (c.live_from_offset, None if c.last_offset is None else c.last_offset + 1)
                           for tp, c in cursors.items()}
            return time.perf_counter() - t0
        finally:
            await consumer.stop()
            await producer.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                    cursors: dict[TopicPartition, _Cursor]) -> None:
        for tp, c in cursors.items():
            consumer.seek(tp, c.seek)
        remaining = set(cursors)
        last_data = time.monotonic()
        with tqdm(unit="rec", desc="replay", file=sys.stderr, mininterval=1.0, disable=not self.opts.progress) as bar:
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=self.opts.batch_size)
                warm: list[ConsumerRecord] = []
                live: list[ConsumerRecord] = []
                if any(batch.values()):
                    last_data = time.monotonic()
                elif time.monotonic() - last_data >= IDLE_DONE_S:
                    break  # every partition still open has nothing newer
                for tp, records in batch.items():
                    c = cursors[tp]
                    for rec in records:
                        kind = c.classify(rec)
                        if kind == "end":
                            break
                        if kind == "warm":
                            warm.append(rec)
                        elif kind == "live":
                            live.append(rec)
                self.run.records += len(live)
                bar.update(len(warm) + len(live))
                # Warm-up first: within a partition every warm-up record precedes every live one.
                self._process(warm, publish=False)
                futures = [await producer.send(self.opts.alerts_topic, record, key=symbol.encode())
                           for symbol, record in self._process(live, publish=self.opts.publish)]
                if futures:
                    await asyncio.gather(*futures)
                for tp in [tp for tp in remaining if cursors[tp].done]:
                    remaining.discard(tp)
                    consumer.pause(tp)

    def replay(self) -> Replay:
        run = self.run
        return Replay(np.asarray(run.scores, dtype=np.float64), sorted(run.lines), run.alerts, 0.0)


def run_replay(broker_url: str, opts: ReplayOptions, pipeline: Pipeline,
               client: dict[str, Any] | None = None) -> dict[str, Any]:
    """Replay, then write ``alerts.jsonl`` and ``summary.json`` (and the labelled report) to ``opts.out``."""
    job = TopicReplay(broker_url, opts, pipeline, client)
    seconds = asyncio.run(job.execute())
    run = job.run
    replay = job.replay()
    replay.seconds = seconds
    ticks = len(run.scores)
    summary: dict[str, Any] = {
        "app_id": opts.app_id,
        "topic": opts.topic,
        "alerts_topic": opts.alerts_topic,
        "partitions": {str(p): {"from_offset": a, "to_offset": b} for p, a, b in
                       ((p, *r) for p, r in sorted(job.ranges.items()))},
        "records": run.records,
        "ticks_processed": ticks,
        "warmup_ticks": run.warmup_ticks,
        "duplicates_skipped": run.skipped,
        "rejected": dict(sorted(run.rejected.items())),
        "alerts": len(run.lines),
        "model_version": pipeline.model_version,
        "threshold": pipeline.config.alert_threshold,
        "seconds": round(seconds, 3),
        "ticks_per_s": round(ticks / seconds, 1) if seconds > 0 else None,
    }
    if opts.out is None:
        return summary
    if opts.labels is not None and ticks:
        table = run.builder.table([], by_time=False)
        table.rows = run.records
        table.rejected = run.rejected
        labels = read_labels(opts.labels, table.symbols)
        report = write_report(pipeline, table, replay, labels, ReportOptions(opts.out), opts.batch_size,
                              {"replay": summary})
        summary.update({k: report[k] for k in ("events", "detected", "recall", "precision", "f1",
                                                "false_alarms_per_symbol_day", "delay_median_s")})
    else:
        write_alerts(opts.out, replay)
    (opts.out / "summary.json").write_bytes(encode(summary) + b"\n")
    return summary
