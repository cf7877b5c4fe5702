"""``cryptotrace demo``: broker, worker and synthetic feed in one command; alerts printed live.

The feed sends a backfill (``backfill_s`` of event time, as fast as possible, so the
baselines are warm) and then plays the live part at ``speed`` x event time with labelled
injections early in it. The worker is a real ``cryptotrace worker`` subprocess against the
same broker. With ``seconds`` set, the feed stops after that many seconds, the worker gets
up to ``DRAIN_S`` to process what was sent, and the last line printed is a JSON summary:
ticks processed (from the worker), alerts received from the ``alerts`` topic, and each
injected event with whether an alert for its symbol fell inside its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any

from aiokafka import AIOKafkaConsumer

from app.broker import EmbeddedBroker
from app.feed import bootstrap_of, produce_ticks
from app.settings import Settings
from app.topics import ensure_topics
from models.synthetic import Injection, Label, default_profiles, generate

logger = logging.getLogger(__name__)

#: After the feed stops, wait at most this long for the worker to process what was sent.
DRAIN_S = 30.0
# Event-time offsets (s after the live start) of the injected events shown in the demo.
DEMO_SCHEDULE: tuple[tuple[str, int, float], ...] = (
    ("pump_and_dump", 0, 150.0),
    ("flash_crash", 1, 270.0),
    ("volume_spike_flat", 2, 390.0),
    ("pump_and_dump", 3, 510.0),
)


def demo_ticks(n_symbols: int, backfill_s: float, live_s: float, seed: int) -> tuple[Any, list[Label], int]:
    """Ticks ending ``live_s`` after now, labels, and the live start (ms)."""
    now_ms = int(time.time() * 1000)
    start = now_ms - int(backfill_s * 1000)
    profiles = default_profiles(n_symbols, seed=seed, illiquid_fraction=0.4)
    # Pumps hit the illiquid names (as in the published cases), the rest the liquid ones.
    illiquid = [p.symbol for p in profiles if not p.liquid]
    liquid = [p.symbol for p in profiles if p.liquid]
    injections = []
    for scenario, k, offset_s in DEMO_SCHEDULE:
        if offset_s >= live_s - 60:
            continue
        pool = illiquid if scenario == "pump_and_dump" and illiquid else liquid
        injections.append(Injection(scenario, pool[k % len(pool)], now_ms + int(offset_s * 1000)))
    batch, labels = generate(profiles, start_ms=start, duration_s=backfill_s + live_s, injections=injections,
                             seed=seed)
    return batch, labels, now_ms


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback URL
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return None


async def _collect_alerts(bootstrap: str, topic: str, sink: list[dict[str, Any]], stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for rec in records:
                    alert = json.loads(rec.value)
                    sink.append(alert)
                    top = ", ".join(f"{f['feature']}={f['value']} (z={f['z']})" for f in alert["top_features"][:3])
                    sys.stdout.write(
                        f"ALERT {alert['severity']:>8} {alert['symbol']:<10} score={alert['score']:.3f} "
                        f"rule={alert['rule']} t={alert['event_time']} | {top}\n"
                    )
                    sys.stdout.flush()
    finally:
        await consumer.stop()


def summarise(labels: list[Label], alerts: list[dict[str, Any]], ticks_processed: int) -> dict[str, Any]:
    injected = []
    for lab in labels:
        hit = any(a["symbol"] == lab.symbol and lab.start_ms <= a["event_time"] <= lab.end_ms for a in alerts)
        injected.append({"scenario": lab.scenario, "symbol": lab.symbol, "start": lab.start_ms, "detected": hit})
    return {"ticks_processed": ticks_processed, "alerts": len(alerts), "injected": injected}


async def _run(settings: Settings, broker_url: str, seconds: float | None, speed: float, symbols: int,
               backfill_s: float) -> dict[str, Any]:
    live_s = (seconds * speed) if seconds else 6 * 3600.0
    batch, labels, live_from = demo_ticks(symbols, backfill_s, live_s, seed=7)
    logger.info("demo: %d ticks for %d symbols (%d s backfill, then %sx); %d injected events",
                len(batch), symbols, backfill_s, speed, len(labels))
    env = dict(os.environ, CRYPTOTRACE_BROKER_URL=broker_url, CRYPTOTRACE_DATA_DIR=str(settings.data_dir))
    shutil.rmtree(settings.data_dir, ignore_errors=True)  # the embedded broker starts empty too
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env)
    feed_stop, collect_stop = asyncio.Event(), asyncio.Event()
    alerts: list[dict[str, Any]] = []
    stats_url = f"http://{settings.web_host}:{settings.web_port}/stats"
    stats: dict[str, Any] = {}
    try:
        collector = asyncio.create_task(
            _collect_alerts(bootstrap_of(broker_url), settings.alerts_topic, alerts, collect_stop))
        feeder = asyncio.create_task(produce_ticks(broker_url, settings.ticks_topic, batch.records(),
                                                   live_from_ms=live_from, speed=speed, stop=feed_stop))
        deadline = time.monotonic() + seconds if seconds else None
        while deadline is None or time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with code {worker.returncode}")
            if feeder.done():
                feeder.result()
            await asyncio.sleep(0.5)
        feed_stop.set()
        sent = await feeder
        # Let the worker finish what was already sent (bounded), so the summary describes it.
        drain_until = time.monotonic() + DRAIN_S
        while time.monotonic() < drain_until:
            stats = _get_json(stats_url) or stats
            if int(stats.get("ticks_processed", 0)) >= sent:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # the last alerts reach the collector
        collect_stop.set()
        await collector
        logger.info("demo: sent %d ticks, worker processed %s", sent, stats.get("ticks_processed"))
    finally:
        feed_stop.set()
        collect_stop.set()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return summarise(labels, alerts, int(stats.get("ticks_processed", 0)))


def run_demo(settings: Settings, seconds: float | None, speed: float = 10.0, symbols: int = 12,
             backfill_s: float = 2700.0) -> dict[str, Any]:
    """Run the demo; returns (and prints as the last line) the summary."""
    with contextlib.ExitStack() as stack:
        broker_url = settings.broker_url
        if not broker_url:
            broker = stack.enter_context(EmbeddedBroker(settings.embedded_broker_port))
            broker_url = broker.url
        ensure_topics(broker_url, [settings.ticks_topic, settings.alerts_topic, settings.dlq_topic],
                      settings.topic_partitions)
        try:
            summary = asyncio.run(_run(settings, broker_url, seconds, speed, symbols, backfill_s))
        except KeyboardInterrupt:
            summary = {"interrupted": True}
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return summary
