"""Soak: one worker at steady load for a long time; RSS growth, latency drift, what allocates.

Run: ``python -m benchmarks.soak --out DIR [--minutes 30] [--rate 2000] [--symbols 100] [--tracemalloc]``

An embedded broker and a real worker (``python -m app.cli worker``; with ``--tracemalloc`` under
:mod:`benchmarks.traced_worker`) are started; a producer sends seeded synthetic ticks at ``--rate``
ticks/s (a pre-generated block replayed in a loop with its timestamps shifted forward, so event
time keeps increasing). Every ``--sample-s`` seconds it records the worker's RSS and CPU (psutil),
ticks sent and processed, and the p50/p99 of the worker's end-to-end latency histogram over the
interval (bucket deltas of ``cryptotrace_end_to_end_ms``). Writes ``DIR/soak.json`` (samples,
summary: RSS slope after warm-up in MB/hour, p99 drift first vs last 5 minutes, backlog) and
``DIR/soak.png``; tracemalloc dumps land in ``DIR/tracemalloc/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
from aiokafka import AIOKafkaProducer

from app.broker import EmbeddedBroker, free_port
from app.topics import ensure_topics
from benchmarks.measure import WorkerProc
from models.synthetic import default_profiles, generate

logger = logging.getLogger("cryptotrace.soak")
_BUCKET = re.compile(r'^cryptotrace_end_to_end_ms_bucket\{le="([^"]+)"\} (\S+)$', re.M)
_COUNTER = re.compile(r"^cryptotrace_ticks_processed_total (\S+)$", re.M)


def scrape(port: int) -> tuple[list[tuple[float, float]], float]:
    """(cumulative latency buckets, ticks processed) from the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(n)) for le, n in _BUCKET.findall(text))
    processed = _COUNTER.search(text)
    return buckets, float(processed.group(1)) if processed else 0.0


def quantile(prev: list[tuple[float, float]], now: list[tuple[float, float]], q: float) -> float | None:
    """Upper bucket bound holding the q-quantile of the observations between two scrapes (-1: beyond all)."""
    if not now:
        return None
    before = dict(prev)
    deltas = [(le, n - before.get(le, 0.0)) for le, n in now]
    total = deltas[-1][1]
    if total <= 0:
        return None
    for le, n in deltas:
        if n >= q * total:
            return le if le != float("inf") else -1.0  # -1: above the largest bucket (JSON has no inf)
    return None


class Feeder(threading.Thread):
    """Sends a looping block of ticks at a steady rate (chunks every 100 ms)."""

    def __init__(self, bootstrap: str, topic: str, block: list[dict[str, Any]], rate: float) -> None:
        super().__init__(daemon=True, name="soak-feeder")
        self.bootstrap, self.topic, self.block, self.rate = bootstrap, topic, block, rate
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks=1)
        await producer.start()
        span = self.block[-1]["timestamp"] - self.block[0]["timestamp"] + 1
        shift, i, t0 = 0, 0, time.monotonic()
        try:
            while not self.stop_event.is_set():
                due = int((time.monotonic() - t0) * self.rate) - self.sent
                for _ in range(max(0, due)):
                    rec = dict(self.block[i])
                    rec["timestamp"] += shift
                    await producer.send(self.topic, orjson.dumps(rec), key=rec["symbol"].encode())
                    self.sent += 1
                    i += 1
                    if i == len(self.block):
                        i, shift = 0, shift + span
                await asyncio.sleep(0.1)
            await producer.flush()
        finally:
            await producer.stop()


def summarise(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t_s"] >= warmup_s] or samples
    t = np.array([s["t_s"] for s in steady]) / 3600.0
    rss = np.array([s["rss_mb"] for s in steady])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(steady) >= 3 else None
    first = [s["p99_ms"] for s in steady if s["t_s"] < steady[0]["t_s"] + 300 and s["p99_ms"] is not None]
    last = [s["p99_ms"] for s in steady if s["t_s"] > steady[-1]["t_s"] - 300 and s["p99_ms"] is not None]
    return {
        "rss_mb_after_warmup": round(float(rss[0]), 1), "rss_mb_end": round(float(rss[-1]), 1),
        "rss_mb_max": round(float(max(s["rss_mb"] for s in samples)), 1),
        "rss_slope_mb_per_hour": None if slope is None else round(slope, 2),
        "p99_ms_first_5min_median": float(np.median(first)) if first else None,
        "p99_ms_last_5min_median": float(np.median(last)) if last else None,
        "backlog_end": samples[-1]["sent"] - samples[-1]["processed"],
    }


def plot(path: Path, samples: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a.plot(t, [s["rss_mb"] for s in samples])
    a.set_ylabel("worker RSS (MB)")
    b.plot(t, [s["p99_ms"] or np.nan for s in samples], label="p99")
    b.plot(t, [s["p50_ms"] or np.nan for s in samples], label="p50")
    b.set_ylabel("end-to-end latency (ms, bucket bound)")
    b.set_xlabel("minutes")
    b.legend()
    fig.suptitle("CryptoTrace soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=2000.0, help="ticks/s offered")
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--warmup-s", type=float, default=120.0)
    p.add_argument("--tracemalloc", action="store_true", help="run the worker under tracemalloc (slower)")
    p.add_argument("--model-dir", type=Path, default=Path("artifacts/models"))
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="[%(asctime)s] %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:])

    profiles = default_profiles(args.symbols, seed=3)
    batch, _ = generate(profiles, start_ms=1_710_000_000_000, duration_s=1800, seed=3)
    block = list(batch.records())
    logger.info("block of %d ticks, %d symbols; soak %.0f min at %.0f ticks/s", len(block), args.symbols,
                args.minutes, args.rate)
    samples: list[dict[str, Any]] = []
    with EmbeddedBroker(0, log_path=args.out / "tansu.log") as broker:
        ensure_topics(broker.url, ["soak-ticks", "soak-alerts", "soak-dlq"], 8)
        worker = WorkerProc("worker", args.out / "worker", broker_url=broker.url, app_id="soak",
                            ticks_topic="soak-ticks", partitions=8, model_dir=args.model_dir, port=free_port())
        if args.tracemalloc:
            worker._spawn([sys.executable, "-m", "benchmarks.traced_worker", str(args.out / "tracemalloc"),
                           "60", "worker"], worker.env)
        else:
            worker.start()
        worker.wait_ready()
        feeder = Feeder(broker.bootstrap, "soak-ticks", block, args.rate)
        proc = psutil.Process(worker.proc.pid if worker.proc else 0)
        proc.cpu_percent()
        t0 = time.monotonic()
        feeder.start()
        prev, _ = scrape(worker.port)
        try:
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(args.sample_s)
                worker.check_alive()
                buckets, processed = scrape(worker.port)
                samples.append({
                    "t_s": round(time.monotonic() - t0, 1), "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                    "cpu_pct": proc.cpu_percent(), "sent": feeder.sent, "processed": processed,
                    "p50_ms": quantile(prev, buckets, 0.5), "p99_ms": quantile(prev, buckets, 0.99),
                })
                prev = buckets
                if len(samples) % 6 == 0:
                    logger.info("%s", samples[-1])
        finally:
            feeder.stop_event.set()
            feeder.join(30)
            worker.stop()
    result = {"benchmark": "soak", "command": command, "rate": args.rate, "symbols": args.symbols,
              "minutes": args.minutes, "tracemalloc": args.tracemalloc,
              "summary": summarise(samples, args.warmup_s), "samples": samples}
    dumps = sorted((args.out / "tracemalloc").glob("tracemalloc-*.json"))
    if dumps:
        result["tracemalloc_last"] = json.loads(dumps[-1].read_text())
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    plot(args.out / "soak.png", samples)
    sys.stdout.write(json.dumps({"command": command, **result["summary"]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
