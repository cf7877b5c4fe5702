"""``cryptotrace retrain``: refit the unsupervised member on recent normal ticks, while the workers run.

Markets drift, and an IsolationForest fitted once starts calling the new normal anomalous. This
job reads a window of the ticks topic the way ``cryptotrace replay`` does (its own client id, no
consumer group, live offsets untouched, nothing published), runs the current model over it, and
hands every micro-batch to :class:`models.retraining.Retrainer`, which keeps a seeded sample of
rows that were *normal*: below the alert threshold and with no alert of their symbol within the
quiet period on either side. At the end it refits the IsolationForest on that sample once,
re-anchors the member's calibration, and saves a new artifact (hash-checked like any other, its
``manifest.json`` naming the base version and the rows used). ``--publish`` then puts it in the
Redis registry, and every worker switches to it between two batches, stamping the new version
on its alerts.

Why a job and not inside the worker: a refit is seconds of CPU that would stall the event loop
(heartbeats, rebalances); every worker of a cluster must run the same model or the same tick
gets different scores depending on who owns it; and a replay of the same range must give the
same alerts as live, which a model changing mid-stream on one worker would break. Run it from
cron or a scheduler (e.g. hourly with ``--from -6h``), or let it schedule itself with ``--every 1h``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from app.kafka_security import KafkaSecurity
from app.settings import Settings
from models.errors import ConfigError
from models.pipeline import BatchResult
from models.retraining import RetrainConfig, Retrainer
from models.ticks import Tick

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", default=None, help="ticks topic to learn from (default: the ticks topic setting)")
    p.add_argument("--from", dest="start", default="-6h",
                   help="start of the window: earliest | offset:N | time: ms, ISO-8601 or relative (default -6h)")
    p.add_argument("--to", dest="end", default="latest", help="end of the window (as for replay; default latest)")
    p.add_argument("--model-version", default=None, help="base model (default: the newest, as the worker picks)")
    p.add_argument("--min-rows", type=int, default=5_000, help="refuse to refit on fewer normal rows")
    p.add_argument("--sample-rate", type=float, default=0.05, help="share of normal rows sampled (seeded)")
    p.add_argument("--reservoir", type=int, default=20_000, help="most recent sampled rows kept for the fit")
    p.add_argument("--quiet-minutes", type=float, default=30.0,
                   help="rows this close to an alert of their symbol are never learned")
    p.add_argument("--trees", type=int, default=100, help="IsolationForest trees")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--publish", action="store_true", help="publish the new version to the Redis model registry")
    p.add_argument("--every", type=parse_interval, default=None,
                   help="keep running: retrain at this interval (30m, 6h, 1d) on the window --from before now")


def parse_interval(text: str) -> float:
    """'90s', '30m', '6h', '1d' -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"interval like 30m, 6h or 1d expected, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"interval must be positive, got {text!r}")
    return value


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.every is None:
        return _once(settings, args)
    # A scheduler of its own (one container next to the workers): a failed or skipped round is
    # logged and the next one comes anyway; each round re-reads the window relative to its start.
    while True:
        started = time.monotonic()
        try:
            code = _once(settings, args)
        except Exception:  # noqa: BLE001 - e.g. the broker unreachable this round: log it, try next round
            logger.exception("retrain round failed")
            code = 1
        logger.info("retrain round ended with exit %d; next in %.0f s", code, args.every)
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


def _once(settings: Settings, args: argparse.Namespace) -> int:
    try:
        summary = retrain(settings, args)
    except (OSError, ValueError, ConfigError) as exc:
        logger.error("retrain failed: %s", exc)
        return 2
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0 if summary.get("new_version") else 3


def retrain(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from app.backtest import build_pipeline
    from app.model_store import save_bundle
    from app.replay import ReplayOptions, TopicReplay, parse_bound

    pipeline = build_pipeline(settings, args.model_version, None)
    bundle = pipeline.bundle
    if bundle is None:
        raise ConfigError(f"no trained model in {settings.model_dir}: nothing to retrain (run `cryptotrace train`)")
    config = RetrainConfig(every_rows=1 << 62, min_interval_s=0.0, reservoir_size=args.reservoir,
                           min_rows=min(args.min_rows, args.reservoir), sample_rate=args.sample_rate,
                           quiet_s=args.quiet_minutes * 60.0, n_estimators=args.trees, seed=args.seed)
    retrainer = Retrainer(bundle, config)
    threshold = pipeline.config.alert_threshold

    seen = {"rows": 0, "alerts": 0}

    def observe(result: BatchResult, ticks: list[Tick]) -> None:
        seen["rows"] += len(result.model_rows)
        seen["alerts"] += len(result.alerts)
        retrainer.observe(result, ticks, threshold)  # every_rows is unreachable: no refit mid-window

    now_ms = int(time.time() * 1000)
    app_id = f"{settings.app_id}-retrain-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now_ms / 1000))}"
    opts = ReplayOptions(topic=args.topic or settings.ticks_topic, start=parse_bound(args.start, now_ms),
                         end=parse_bound(args.end, now_ms), app_id=app_id, alerts_topic=f"{app_id}-unused",
                         live_alerts_topic=settings.alerts_topic, batch_size=settings.batch_size, publish=False)
    broker_url = settings.broker_or_embedded_url
    job = TopicReplay(broker_url, opts, pipeline, KafkaSecurity.from_settings(settings).client_kwargs(),
                      observer=observe)
    seconds = asyncio.run(job.execute())
    summary: dict[str, Any] = {
        "base_version": bundle.version, "topic": opts.topic, "ticks": job.run.warmup_ticks,
        "threshold": threshold, "rows_scored": seen["rows"], "alerts_in_window": seen["alerts"],
        "normal_rows_sampled": len(retrainer.reservoir), "min_rows": config.min_rows,
        "read_seconds": round(seconds, 3), "new_version": None, "published": False,
    }
    request = retrainer.request_now()
    if request is None:
        logger.warning("only %d normal rows sampled (need %d): model left as it is; widen --from or raise "
                       "--sample-rate", len(retrainer.reservoir), config.min_rows)
        return summary
    t0 = time.perf_counter()
    path = save_bundle(request.fit(), settings.model_dir)
    summary.update({"new_version": path.name, "fit_seconds": round(time.perf_counter() - t0, 3),
                    "rows_used": int(len(request.rows))})
    logger.info("retrained %s on %d normal rows -> %s", bundle.version, len(request.rows), path.name)
    if args.publish:
        from app.registry import publish

        summary["published"] = bool(publish(settings, path.name))
    return summary
