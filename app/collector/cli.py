"""``cryptotrace feed exchange``: public exchange trades into the ``ticks`` topic.

Wired into :mod:`app.cli` with :func:`add_arguments` and :func:`run`. Runs until SIGINT or
SIGTERM (or ``--duration``), then flushes, waits for Kafka's acknowledgements and prints a
one-line JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.collector.connection import Backoff
from app.collector.exchanges import EXCHANGES
from app.collector.memory import SnapshotDumper, rss_bytes
from app.collector.metrics import CollectorMetrics
from app.collector.producer import KAFKA_LINGER_MS, TickBatcher
from app.collector.service import Collector, CollectorConfig
from app.feed import bootstrap_of
from app.kafka_security import KafkaSecurity
from app.settings import Settings

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exchange", required=True, choices=sorted(EXCHANGES))
    parser.add_argument("--symbols", required=True, nargs="+",
                        help="symbols in the exchange's spelling (BTCUSDT, BTC-USD, BTC-USDT); "
                        "space- or comma-separated")
    parser.add_argument("--url", default=None, help="WebSocket endpoint (default: the exchange's public one)")
    parser.add_argument("--per-connection", type=int, default=None,
                        help="symbols per connection (default and maximum depend on the exchange)")
    parser.add_argument("--symbol-prefix", action="store_true",
                        help="name ticks '<exchange>:<symbol>' so that exchanges do not share symbol state")
    parser.add_argument("--batch-size", type=int, default=1000, help="flush once this many ticks are buffered")
    parser.add_argument("--linger-ms", type=float, default=50.0, help="flush at least this often")
    parser.add_argument("--max-buffer", type=int, default=200_000,
                        help="ticks buffered at most while Kafka is slow (then dropped and counted)")
    parser.add_argument("--keepalive", type=float, default=None,
                        help="seconds of silence before probing the connection (default per exchange)")
    parser.add_argument("--backoff-base", type=float, default=0.5, help="first reconnect delay (s)")
    parser.add_argument("--backoff-max", type=float, default=30.0, help="longest reconnect delay (s)")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--tracemalloc-dir", type=Path, default=None,
                        help="dump tracemalloc snapshots here (slows the collector down)")
    parser.add_argument("--tracemalloc-interval", type=float, default=60.0, help="seconds between snapshots")
    parser.add_argument("--no-create-topic", action="store_true", help="do not create the ticks topic")


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    symbols = tuple(s for arg in args.symbols for s in arg.split(",") if s.strip())
    return CollectorConfig(
        exchange=args.exchange, symbols=symbols, url=args.url, per_connection=args.per_connection,
        symbol_prefix=args.symbol_prefix, backoff=Backoff(base_s=args.backoff_base, max_s=args.backoff_max),
        keepalive_s=args.keepalive,
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of ``feed exchange``: 0 after a clean stop, 1 when Kafka fails, 2 on bad options."""
    try:
        config = config_from_args(args)
        Collector(config, lambda ticks: None, CollectorMetrics.create(process=False))  # validate early
    except ValueError as exc:
        logger.error("feed exchange: %s", exc)
        return 2
    url = settings.broker_or_embedded_url
    if not args.no_create_topic:
        from app.topics import ensure_topics

        try:
            ensure_topics(url, [settings.ticks_topic], settings.topic_partitions,
                          client=KafkaSecurity.from_settings(settings).client_kwargs())
        except RuntimeError as exc:
            logger.error("feed exchange: %s", exc)
            return 1
    try:
        summary = asyncio.run(_collect(settings, args, config, url))
    except Exception as exc:  # noqa: BLE001 - Kafka unreachable and the like: a message, not a traceback
        logger.error("feed exchange failed: %r", exc)
        return 1
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


async def _collect(settings: Settings, args: argparse.Namespace, config: CollectorConfig, url: str) -> dict[str, Any]:
    metrics = CollectorMetrics.create()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(url), linger_ms=KAFKA_LINGER_MS, acks=1,
                                max_batch_size=256 * 1024, **KafkaSecurity.from_settings(settings).client_kwargs())
    try:
        await producer.start()
    except Exception:
        await producer.stop()  # release its connections before the error surfaces
        raise
    batcher = TickBatcher(producer, settings.ticks_topic, metrics, config.exchange, max_batch=args.batch_size,
                          linger_s=args.linger_ms / 1000.0, max_buffer=args.max_buffer)
    collector = Collector(config, batcher.add, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    dumper = SnapshotDumper(args.tracemalloc_dir, args.tracemalloc_interval) if args.tracemalloc_dir else None
    if dumper is not None:
        dumper.start()
    runner = await serve_metrics(metrics.registry, args.metrics_host, args.metrics_port) \
        if args.metrics_port is not None else None
    batch_task = asyncio.create_task(batcher.run(), name="batcher")
    collect_task = asyncio.create_task(collector.run(), name="collector")
    side_tasks = [asyncio.create_task(dumper.run(), name="tracemalloc")] if dumper is not None else []
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([collect_task, stop_task], timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Order matters: stop reading, then flush what was read, then close the producer.
        for task in (collect_task, stop_task, *side_tasks):
            task.cancel()
        await asyncio.gather(collect_task, stop_task, *side_tasks, return_exceptions=True)
        batcher.close()
        await asyncio.gather(batch_task, return_exceptions=True)
        await producer.stop()
        if runner is not None:
            await runner.cleanup()
        if dumper is not None:
            dumper.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    failure = collect_task.exception() if collect_task.done() and not collect_task.cancelled() else None
    if failure is not None:
        raise failure
    return summary(metrics, config.exchange, len(collector.groups))


def summary(metrics: CollectorMetrics, exchange: str, connections: int) -> dict[str, Any]:
    """The figures an operator checks first, as printed at exit."""
    return {
        "exchange": exchange,
        "connections": connections,
        "frames": metrics.value("frames_total", exchange=exchange),
        "trades": metrics.value("trades_total", exchange=exchange),
        "ticks_produced": metrics.value("ticks_produced_total", exchange=exchange),
        "records_produced": metrics.value("records_produced_total", exchange=exchange),
        "invalid_frames": metrics.total("invalid_frames_total", exchange),
        "trade_id_gaps": metrics.value("trade_id_gaps_total", exchange=exchange),
        "duplicates": metrics.value("duplicate_trades_total", exchange=exchange),
        "reconnects": metrics.total("reconnects_total", exchange),
        "produce_errors": metrics.value("produce_errors_total", exchange=exchange),
        "ticks_dropped": metrics.value("ticks_dropped_total", exchange=exchange),
        "rss_mb": round(rss_bytes() / 1e6, 1),
    }


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> web.AppRunner:
    """Prometheus text exposition at ``http://host:port/metrics`` on the running loop."""

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    logger.info("collector metrics on http://%s:%d/metrics", host, port)
    return runner
