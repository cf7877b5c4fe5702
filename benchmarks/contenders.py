"""The reference contenders of the benchmark, each run as its own process by :mod:`benchmarks.bench`.

``python -m benchmarks.contenders KIND --bootstrap H:P --thr-topic T --lat-topic L --group G ...``

* ``raw_aiokafka``: an aiokafka consumer (``getmany``) that decodes each record with orjson and
  does nothing else: the ceiling of Python consuming this broker;
* ``bare_faust``: a Faust app with default settings whose agent only iterates the topic;
* ``naive``: the design the old documents describe: ``group_by(symbol)`` per event, one table
  write per event (RocksDB store), one IsolationForest(100 trees) ``score_samples`` call per tick.

Each subscribes to the pre-produced throughput topic and to the (initially empty) latency topic.
It counts throughput-topic ticks up to ``--thr-expect`` and records when the first and the
``thr_expect``-th were processed; for latency-topic ticks it records (tick timestamp, processed
wall time in ms). Progress goes to ``--status`` (JSON, rewritten every 0.2 s and at each
milestone); the latency samples go to ``--lat-out`` once ``--lat-expect`` ticks were seen.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

KINDS = ("raw_aiokafka", "bare_faust", "naive")
# Start-up only: Tansu answers a first JoinGroup after half the session timeout (see bench docs).
SESSION_TIMEOUT_S = 4.0
HEARTBEAT_S = 1.0


class Recorder:
    """Counters of one contender, written to its status and latency files."""

    def __init__(self, status: Path, lat_out: Path, thr_expect: int, lat_expect: int) -> None:
        self.status = status
        self.lat_out = lat_out
        self.thr_expect = thr_expect
        self.lat_expect = lat_expect
        self.thr_count = 0
        self.thr_first: float | None = None
        self.thr_last: float | None = None
        self.lat_ts: list[int] = []
        self.lat_done: list[float] = []
        self._written_at = 0.0
        self._lat_written = False

    def thr(self, n: int = 1) -> None:
        if self.thr_count >= self.thr_expect:
            return
        now = time.time()
        if self.thr_first is None:
            self.thr_first = now
        self.thr_count += n
        if self.thr_count >= self.thr_expect:
            self.thr_last = now
            self.write_status()

    def lat(self, timestamp: int) -> None:
        self.lat_ts.append(int(timestamp))
        self.lat_done.append(time.time() * 1000.0)
        if len(self.lat_ts) >= self.lat_expect and not self._lat_written and self.lat_expect > 0:
            self._lat_written = True
            tmp = self.lat_out.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"ts": self.lat_ts, "done": self.lat_done}))
            os.replace(tmp, self.lat_out)
            self.write_status()

    def write_status(self) -> None:
        self._written_at = time.monotonic()
        tmp = self.status.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({
            "pid": os.getpid(), "thr_count": self.thr_count, "thr_first": self.thr_first,
            "thr_last": self.thr_last, "lat_count": len(self.lat_ts),
        }))
        os.replace(tmp, self.status)

    def maybe_write_status(self) -> None:
        if time.monotonic() - self._written_at >= 0.2:
            self.write_status()


# --------------------------------------------------------------------------- raw aiokafka
async def _raw(args: argparse.Namespace, rec: Recorder) -> None:
    from aiokafka import AIOKafkaConsumer

    extra = {"fetch_max_wait_ms": args.fetch_wait_ms} if args.fetch_wait_ms else {}
    consumer = AIOKafkaConsumer(
        *[t for t in (args.thr_topic, args.lat_topic) if t], bootstrap_servers=args.bootstrap, group_id=args.group,
        auto_offset_reset="earliest", session_timeout_ms=int(SESSION_TIMEOUT_S * 1000),
        heartbeat_interval_ms=int(HEARTBEAT_S * 1000), **extra,
    )
    await consumer.start()
    loads = orjson.loads
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                if tp.topic == args.thr_topic:
                    for r in records:
                        loads(r.value)
                        rec.thr()
                else:
                    for r in records:
                        rec.lat(loads(r.value)["timestamp"])
            rec.maybe_write_status()
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- Faust contenders
def _faust_app(args: argparse.Namespace, rec: Recorder, store: str) -> Any:
    import faust

    if args.fetch_wait_ms:
        from benchmarks.fetchwait import install

        install(args.fetch_wait_ms)
    # Default settings, except what a benchmark must set: where the broker and the data are,
    # read the pre-produced topic from the start, no web server, and short group timeouts
    # (they only shorten the start-up on the local broker).
    app = faust.App(
        args.group, broker=f"kafka://{args.bootstrap}", store=store, datadir=args.datadir, web_enabled=False,
        consumer_auto_offset_reset="earliest", topic_partitions=args.partitions,
        broker_session_timeout=SESSION_TIMEOUT_S, broker_heartbeat_interval=HEARTBEAT_S,
        broker_rebalance_timeout=SESSION_TIMEOUT_S,
    )

    @app.timer(0.2)
    async def _status() -> None:
        rec.write_status()

    return app


def _bare_faust(args: argparse.Namespace, rec: Recorder) -> Any:
    app = _faust_app(args, rec, "memory://")
    lat_topic = app.topic(args.lat_topic)
    if args.thr_topic:

        @app.agent(app.topic(args.thr_topic))
        async def bare(stream: Any) -> None:
            async for _ in stream:
                rec.thr()

    @app.agent(lat_topic)
    async def bare_lat(stream: Any) -> None:
        async for value in stream:
            rec.lat(value["timestamp"])

    return app


def _symbol(value: Any) -> str:
    return str(value["symbol"])


def _naive(args: argparse.Namespace, rec: Recorder) -> Any:
    import numpy as np
    from sklearn.ensemble import IsolationForest

    app = _faust_app(args, rec, "rocksdb://")
    lat_topic = app.topic(args.lat_topic)
    state = app.Table("naive-state", default=dict, partitions=args.partitions)
    rng = np.random.default_rng(0)
    forest = IsolationForest(n_estimators=100, random_state=0).fit(rng.normal(size=(2048, 3)))

    def step(tick: Any) -> None:
        symbol = tick["symbol"]
        price, qty = float(tick["price"]), float(tick["quantity"])
        prev = state[symbol]
        last = float(prev.get("price", price)) or price
        ret = (price - last) / last
        side = 1.0 if tick["side"] == "buy" else -1.0
        score = float(forest.score_samples(np.array([[ret * 1e3, math.log1p(qty), side]]))[0])  # one row per call
        state[symbol] = {"price": price, "n": int(prev.get("n", 0)) + 1, "score": score}  # one write per event

    if args.thr_topic:

        @app.agent(app.topic(args.thr_topic))
        async def naive(stream: Any) -> None:
            async for tick in stream.group_by(_symbol, name="naive-thr-symbol"):
                step(tick)
                rec.thr()

    @app.agent(lat_topic)
    async def naive_lat(stream: Any) -> None:
        async for tick in stream.group_by(_symbol, name="naive-lat-symbol"):
            step(tick)
            rec.lat(tick["timestamp"])

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--thr-topic", default="", help="pre-produced topic (empty: latency run only)")
    p.add_argument("--lat-topic", required=True)
    p.add_argument("--group", required=True, help="consumer group / Faust app id")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--thr-expect", type=int, default=0)
    p.add_argument("--lat-expect", type=int, default=0)
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--lat-out", type=Path, required=True)
    p.add_argument("--datadir", type=Path, required=True)
    p.add_argument("--fetch-wait-ms", type=int, default=None,
                   help="cap the consumer's fetch_max_wait_ms (see benchmarks.fetchwait)")
    p.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="Faust contenders: the event loop (Faust's default: asyncio)")
    args = p.parse_args(argv)
    if args.event_loop == "uvloop" and args.kind != "raw_aiokafka":
        import mode.loop

        mode.loop.use("uvloop")
    rec = Recorder(args.status, args.lat_out, args.thr_expect, args.lat_expect)
    rec.write_status()
    if args.kind == "raw_aiokafka":
        try:
            asyncio.run(_raw(args, rec))
        except KeyboardInterrupt:
            pass
        return 0
    from faust.worker import Worker

    app = _bare_faust(args, rec) if args.kind == "bare_faust" else _naive(args, rec)
    worker = Worker(app, loglevel="info", logfile=None)
    sys.argv = [sys.argv[0], "worker"]
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
