"""Does the embedded broker get slower as its log grows? Plain aiokafka, no Faust, no CryptoTrace worker.

Run: ``python -m benchmarks.broker_drift --out DIR [--minutes 12] [--rate 1000] [--filler-mb-per-s 1.5]``

A memory-only embedded broker; a probe producer sends ``--rate`` small records a second to
``probe`` while a filler producer writes ``--filler-mb-per-s`` of 3 KB records to ``filler`` (what a
worker's changelog adds: a JSON snapshot per symbol per batch). A plain consumer of ``probe``
measures each record's latency from its producer timestamp. Every minute: p50/p99 latency, the
broker process's RSS and CPU. Writes ``DIR/broker_drift.json``. If latency climbs with the
broker's RSS while nothing else changes, the soak's latency drift is the broker's, not the worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import EmbeddedBroker
from app.topics import ensure_topics

logger = logging.getLogger("cryptotrace.broker_drift")
PARTITIONS = 8


async def _produce(bootstrap: str, topic: str, value: bytes, per_s: float, linger_ms: int,
                   stop: asyncio.Event) -> None:
    """Send ``value`` to ``topic`` at ``per_s`` records a second, round-robin over the partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    await producer.start()
    try:
        t0, sent = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - t0) * per_s)
            for _ in range(due - sent):
                await producer.send(topic, value, partition=sent % PARTITIONS)
                sent += 1
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()


async def _measure(broker: EmbeddedBroker, args: argparse.Namespace) -> list[dict[str, Any]]:
    stop = asyncio.Event()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="latest", fetch_max_wait_ms=100)
    await consumer.start()
    consumer.assign([TopicPartition("probe", p) for p in range(PARTITIONS)])
    tasks = [asyncio.create_task(_produce(broker.bootstrap, "probe", b"x" * 100, args.rate, 5, stop))]
    if args.filler_mb_per_s > 0:
        per_s = args.filler_mb_per_s * 2**20 / 3000
        tasks.append(asyncio.create_task(_produce(broker.bootstrap, "filler", b"f" * 3000, per_s, 20, stop)))
    broker_proc = psutil.Process(broker.pid or 0)
    broker_proc.cpu_percent()
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    window: list[float] = []
    next_sample = t0 + 60.0
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            batches = await consumer.getmany(timeout_ms=200)
            now_ms = time.time() * 1000.0
            for records in batches.values():
                window.extend(now_ms - r.timestamp for r in records)
            if time.monotonic() >= next_sample:
                lat = np.asarray(window) if window else np.zeros(1)
                samples.append({"t_s": round(time.monotonic() - t0, 1), "records": len(window),
                                "p50_ms": round(float(np.percentile(lat, 50)), 1),
                                "p99_ms": round(float(np.percentile(lat, 99)), 1),
                                "broker_rss_mb": round(broker_proc.memory_info().rss / 2**20, 1),
                                "broker_cpu_pct": broker_proc.cpu_percent()})
                logger.info("%s", samples[-1])
                window, next_sample = [], next_sample + 60.0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.broker_drift", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=12.0)
    p.add_argument("--rate", type=float, default=1000.0, help="probe records per second")
    p.add_argument("--filler-mb-per-s", type=float, default=1.5, help="filler volume (0: none)")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="[%(asctime)s] %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.broker_drift " + " ".join(argv if argv is not None else sys.argv[1:])
    with EmbeddedBroker(0, log_path=args.out / "tansu.log") as broker:
        ensure_topics(broker.url, ["probe", "filler"], PARTITIONS)
        samples = asyncio.run(_measure(broker, args))
    result = {"benchmark": "broker_drift", "command": command, "rate": args.rate,
              "filler_mb_per_s": args.filler_mb_per_s, "samples": samples}
    (args.out / "broker_drift.json").write_text(json.dumps(result, indent=1))
    logger.info("wrote %s", args.out / "broker_drift.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
