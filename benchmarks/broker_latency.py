"""How the client settings shape end-to-end latency on the embedded broker. Plain aiokafka, no worker.

Run: ``python -m benchmarks.broker_latency --out DIR [--rate 5000] [--seconds 10] [--configs 0:100,5:10]``

For each ``linger_ms:fetch_max_wait_ms`` pair, on a fresh memory-only broker (its cost grows with what it
holds, see :mod:`benchmarks.broker_drift`): a producer sends ``--rate`` small records a second, one
``send`` per record on a fixed schedule (acks=1, the collector's settings but for the linger), and a
plain consumer of the same 8-partition topic measures each record's latency from its scheduled time to
``getmany`` returning it. The first tenth of the records is left out (connection warm-up). Reports
p50/p95/p99/max and the broker's CPU and RSS over the run; writes ``DIR/broker_latency.json``.

It answers: is a latency figure of the end-to-end bench the broker's or the contender's? With linger 0
every send became its own produce request and the broker, not the consumer, set the tail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.broker import EmbeddedBroker
from app.topics import ensure_topics
from benchmarks.measure import percentiles

logger = logging.getLogger("cryptotrace.broker_latency")
PARTITIONS = 8
SYMBOLS = 10


async def _measure(bootstrap: str, topic: str, rate: float, seconds: float, linger_ms: int,
                   fetch_wait_ms: int) -> list[float]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
                                fetch_max_wait_ms=fetch_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=1)
    await consumer.start()
    await producer.start()
    n = int(rate * seconds)
    latencies: list[float] = []

    async def consume() -> None:
        while len(latencies) < n:
            batches = await consumer.getmany(timeout_ms=1000)
            now = time.time() * 1000.0
            latencies.extend(now - r.timestamp for records in batches.values() for r in records)

    try:
        await asyncio.sleep(1.0)  # the consumer has its partitions and sits at their end
        reader = asyncio.create_task(consume())
        t0 = time.time() * 1000.0 + 100.0
        i = 0
        while i < n:
            now = time.time() * 1000.0
            while i < n and t0 + i * 1000.0 / rate <= now:
                symbol = f"S{i % SYMBOLS}"
                await producer.send(topic, orjson.dumps({"symbol": symbol, "i": i}), key=symbol.encode(),
                                    timestamp_ms=int(t0 + i * 1000.0 / rate))
                i += 1
            await asyncio.sleep(0.001)
        await producer.flush()
        try:
            await asyncio.wait_for(reader, timeout=30.0)
        except TimeoutError:
            logger.warning("%d of %d records read back in time", len(latencies), n)
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies


def run_config(rate: float, seconds: float, linger_ms: int, fetch_wait_ms: int) -> dict[str, Any]:
    with EmbeddedBroker() as broker:
        topic = "latency"
        ensure_topics(broker.url, [topic], PARTITIONS)
        assert broker.pid is not None
        proc = psutil.Process(broker.pid)
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        lat = asyncio.run(_measure(broker.bootstrap, topic, rate, seconds, linger_ms, fetch_wait_ms))
        cpu1 = proc.cpu_times()
        wall = time.monotonic() - t0
        rss = proc.memory_info().rss / 2**20
    figures = percentiles(lat[len(lat) // 10:])
    return {"linger_ms": linger_ms, "fetch_max_wait_ms": fetch_wait_ms, "records": len(lat),
            **{f"{k}_ms": v for k, v in figures.items() if k != "samples"},
            "broker_cpu_cores": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 2),
            "broker_rss_mb": round(rss, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.broker_latency", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rate", type=float, default=5000.0, help="records per second offered (5000)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each run (10)")
    p.add_argument("--configs", default="0:100,0:10,5:100,5:10",
                   help="comma-separated linger_ms:fetch_max_wait_ms pairs (0:100,0:10,5:100,5:10)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pairs = [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",")]
    results = []
    for linger, wait in pairs:
        res = run_config(args.rate, args.seconds, linger, wait)
        logger.info("linger %d ms, fetch wait %d ms: %s", linger, wait, res)
        results.append(res)
    command = shlex.join(["python", "-m", "benchmarks.broker_latency", *(sys.argv[1:] if argv is None else argv)])
    report = {"benchmark": "broker_latency", "command": command, "rate": args.rate, "seconds": args.seconds,
              "partitions": PARTITIONS, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "broker_latency.json").write_text(json.dumps(report, indent=1) + "\n")
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
