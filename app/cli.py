"""The ``cryptotrace`` command: worker, train, feed, demo, backtest."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import sys
import time
from pathlib import Path

from app.kafka_security import KafkaSecurity
from app.settings import Settings

logger = logging.getLogger("cryptotrace")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")


def _tune_gc(young: int) -> None:
    """Collect garbage less often in the worker: a tick allocates dozens of short-lived objects, almost
    all freed by reference counting, and Python's default (a young collection every 700 allocations)
    spent ~25 us of CPU per tick finding nothing. What is loaded by now (code, app, model arrays)
    lives as long as the process: frozen, full collections no longer scan it."""
    if young <= 0:
        return
    gc.freeze()
    gc.set_threshold(young, 50, 100)
    logger.info("garbage collection: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from app.broker import EmbeddedBroker
    from app.factory import create_app, load_models, prepare_topics
    from models._native import core_kind, forest_walk

    if settings.event_loop == "uvloop":  # before anything creates a loop (mode's documented way)
        import mode.loop

        mode.loop.use("uvloop")
        logger.info("event loop: uvloop")
    bundle = load_models(settings)  # fail fast on a bad artifact, before any broker work
    logger.info("per-tick core: %s, forest walk: %s (models/_native.py)", core_kind(), forest_walk())
    with contextlib.ExitStack() as stack:
        url = settings.broker_url
        if not url:
            url = stack.enter_context(EmbeddedBroker(settings.embedded_broker_port)).url
            logger.warning("no CRYPTOTRACE_BROKER_URL: using an embedded memory-only broker at %s", url)
        app = create_app(settings, url, bundle, prepare_topics(settings, url))
        _tune_gc(settings.gc_young_threshold)
        worker = Worker(app, loglevel=settings.log_level, logfile=None)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


def _usable_model(settings: Settings) -> str | None:
    """The version the worker would load, if it loads (hash checked, inputs the code's); else None."""
    from app.model_store import ConfigError, load_bundle

    try:
        bundle = load_bundle(settings.model_dir, settings.model_version)
    except ConfigError as exc:  # none yet, or e.g. trained before the model inputs changed: train one
        logger.info("training a model: %s", exc)
        return None
    logger.info("model %s in %s loads and verifies: not training another", bundle.version, settings.model_dir)
    return bundle.version


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.factory import pipeline_config
    from app.model_store import save_bundle
    from models.synthetic import default_profiles, generate, quiet_symbols, random_injections
    from models.training import TrainConfig, Window, build_dataset, fit_bundle

    if args.if_missing and _usable_model(settings) is not None:
        return 0
    profiles = default_profiles(args.symbols, seed=args.seed)
    start = 1_700_000_000_000
    duration = args.hours * 3600.0
    injections = random_injections(profiles, start_ms=start, duration_s=duration, seed=args.seed,
                                   per_symbol_day=args.events_per_day, warmup_s=args.warmup_minutes * 60.0,
                                   quiet=quiet_symbols(profiles, args.quiet_fraction))
    logger.info("generating %d symbols x %.1f h with %d injected events", args.symbols, args.hours, len(injections))
    batch, labels = generate(profiles, start_ms=start, duration_s=duration, injections=injections, seed=args.seed)
    windows = [Window(lab.scenario, lab.symbol, lab.start_ms, lab.end_ms) for lab in labels]
    with tqdm(total=len(batch), unit="tick", desc="features", file=sys.stderr, mininterval=2.0) as bar:
        data = build_dataset(batch.ticks(), windows, pipeline_config(settings), progress=bar.update)
    logger.info("dataset: %d rows, %d positive", len(data.y), int(data.y.sum()))
    quiet = None
    if args.quiet_days > 0:  # other profiles (another seed), no events: false alarms for the threshold choice
        from app.quiet_data import quiet_dataset

        quiet = quiet_dataset(default_profiles(args.symbols, seed=args.seed + 1), start_ms=start,
                              duration_s=args.quiet_days * 86_400.0 / args.symbols, seed=args.seed + 1,
                              config=pipeline_config(settings), regime_shifts_per_day=args.quiet_regime_shifts)
    config = TrainConfig(seed=args.seed, n_estimators=args.trees, false_alarm_confidence=args.false_alarm_confidence)
    bundle = fit_bundle(data, config, cooldown_s=settings.cooldown_s, quiet=quiet)
    path = save_bundle(bundle, settings.model_dir)
    sys.stdout.write(json.dumps({"version": bundle.version, "path": str(path), "threshold": bundle.threshold,
                                 "events_calibration": bundle.info["events_calibration"]}) + "\n")
    return 0


def cmd_feed_synthetic(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.feed import produce_ticks
    from models.synthetic import default_profiles, generate, random_injections

    url = _broker_url(settings)
    now = int(time.time() * 1000)
    start = now - int(args.backfill_minutes * 60_000)
    duration = (args.backfill_minutes + args.minutes) * 60.0
    profiles = default_profiles(args.symbols, seed=args.seed)
    injections = random_injections(profiles, start_ms=start, duration_s=duration, seed=args.seed,
                                   per_symbol_day=args.events_per_day, warmup_s=args.backfill_minutes * 60.0)
    batch, labels = generate(profiles, start_ms=start, duration_s=duration, injections=injections, seed=args.seed)
    if args.labels_out:
        with open(args.labels_out, "w") as fh:
            fh.write("symbol,start,end,scenario\n")
            for lab in labels:
                fh.write(f"{lab.symbol},{lab.start_ms},{lab.end_ms},{lab.scenario}\n")
    from app.topics import ensure_topics

    client = KafkaSecurity.from_settings(settings).client_kwargs()
    ensure_topics(url, [settings.ticks_topic], settings.topic_partitions, client=client)
    logger.info("feeding %d ticks (%d labelled events) to %s", len(batch), len(labels), url)
    with tqdm(total=len(batch), unit="tick", file=sys.stderr) as bar:
        sent = asyncio.run(produce_ticks(url, settings.ticks_topic, batch.records(), live_from_ms=now,
                                         speed=args.speed, progress=bar, client=client))
    logger.info("sent %d ticks", sent)
    return 0


def parse_speed(text: str) -> float | None:
    """``max`` (None: as fast as the broker takes them) or an event-time multiple: ``1x``, ``10x``, ``0.5``.

    >>> parse_speed("max"), parse_speed("10x"), parse_speed("2.5")
    (None, 10.0, 2.5)
    """
    s = text.strip().lower()
    if s == "max":
        return None
    try:
        speed = float(s.removesuffix("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be max or a multiple like 1x or 10x, got {text!r}") from None
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0, got {text!r}")
    return speed


def _broker_url(settings: Settings) -> str:
    """The configured broker, else the embedded one a local `cryptotrace worker`/`demo` started."""
    return settings.broker_or_embedded_url


def cmd_feed_file(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.feed import produce_ticks
    from app.tickfiles import read_ticks
    from app.topics import ensure_topics

    try:
        table = read_ticks(args.path)
    except (OSError, ValueError) as exc:
        logger.error("feed file failed: %s", exc)
        return 2
    url, topic = _broker_url(settings), args.topic or settings.ticks_topic
    client = KafkaSecurity.from_settings(settings).client_kwargs()
    ensure_topics(url, [topic], settings.topic_partitions, client=client)  # before producing: no auto-created topic
    first = int(table.timestamp[0])
    logger.info("feeding %d ticks of %d symbols to %s at %s", len(table), len(table.symbols), topic,
                "max speed" if args.speed is None else f"{args.speed}x event time")
    t0 = time.perf_counter()
    with tqdm(total=len(table), unit="tick", desc="feed", file=sys.stderr, mininterval=1.0) as bar:
        sent = asyncio.run(produce_ticks(url, topic, table.records(), speed=args.speed or 1.0,
                                         live_from_ms=None if args.speed is None else first, progress=bar,
                                         client=client))
        bar.update(sent - bar.n)
    seconds = time.perf_counter() - t0
    sys.stdout.write(json.dumps({"topic": topic, "sent": sent, "rejected": dict(table.rejected),
                                 "symbols": len(table.symbols), "seconds": round(seconds, 3)}) + "\n")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from app.backtest import build_pipeline
    from app.replay import ReplayOptions, parse_bound, run_replay
    from models.errors import ConfigError

    now_ms = int(time.time() * 1000)
    name = args.name or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    app_id = f"{settings.app_id}-replay-{name}"
    try:
        opts = ReplayOptions(
            topic=args.topic or settings.ticks_topic, start=parse_bound(args.start, now_ms),
            end=parse_bound(args.end, now_ms), app_id=app_id, alerts_topic=args.alerts_topic or f"{app_id}-alerts",
            live_alerts_topic=settings.alerts_topic, labels=args.labels, out=args.out,
            batch_size=args.batch_size or settings.batch_size, warmup_ms=int(args.warmup_minutes * 60_000),
        )
        summary = run_replay(_broker_url(settings), opts, build_pipeline(settings, args.model_version, args.threshold),
                             KafkaSecurity.from_settings(settings).client_kwargs())
    except (OSError, ValueError, ConfigError) as exc:
        logger.error("replay failed: %s", exc)
        return 2
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def cmd_synth(settings: Settings, args: argparse.Namespace) -> int:
    from app.synth import write_dataset

    ticks, labels = write_dataset(args.out, symbols=args.symbols, hours=args.hours, seed=args.seed,
                                  events_per_day=args.events_per_day, quiet_fraction=args.quiet_fraction,
                                  profiles=args.profiles)
    sys.stdout.write(json.dumps({"out": str(args.out), "ticks": ticks, "labels": labels}) + "\n")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from app.demo import run_demo

    summary = run_demo(settings, args.seconds, speed=args.speed, symbols=args.symbols)
    return 0 if "ticks_processed" in summary else 1


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from app.backtest import BacktestOptions, run_backtest
    from models.errors import ConfigError

    try:
        opts = BacktestOptions(ticks=args.ticks, labels=args.labels, out=args.out, threshold=args.threshold,
                               model_version=args.model_version, batch_size=args.batch_size,
                               max_plots=args.max_plots)
        report = run_backtest(settings, opts)
    except (OSError, ValueError, ConfigError) as exc:  # bad input or model: a message, not a traceback
        logger.error("backtest failed: %s", exc)
        return 2
    keys = ("events", "detected", "recall", "precision", "f1", "false_alarms_per_symbol_day", "delay_median_s",
            "ticks_processed", "rejected_total", "ticks_per_s", "model_version", "threshold")
    sys.stdout.write(json.dumps({"out": str(args.out), **{k: report[k] for k in keys}}) + "\n")
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from benchmarks.bench import command_line, options_from_args, run_bench

    run_bench(options_from_args(args, command_line(args, "cryptotrace bench")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cryptotrace", description="Real-time crypto-market surveillance.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a stream-processing worker (Faust)")
    w.set_defaults(func=cmd_worker)

    t = sub.add_parser("train", help="train the ensemble on labelled synthetic data and save an artifact")
    # Many symbols, shorter: more varied profiles and events per tick computed (~1.6 M ticks, ~70 s).
    t.add_argument("--symbols", type=int, default=24)
    t.add_argument("--hours", type=float, default=4.0)
    t.add_argument("--events-per-day", type=float, default=12.0)
    t.add_argument("--trees", type=int, default=100)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--quiet-fraction", type=float, default=0.0,
                   help="share of each liquidity class left without events (as the ablation's suite)")
    t.add_argument("--warmup-minutes", type=float, default=30.0, help="no event starts before this")
    # 24 event-free symbol-days (~5 M ticks, ~4 min on 2 cores): the threshold's false alarms are counted
    # on 28 symbol-days instead of 4 (docs/detection-history.md, "quiet symbol-days").
    t.add_argument("--quiet-days", type=float, default=24.0,
                   help="symbol-days of event-free data whose false alarms count in the threshold choice (0: none)")
    t.add_argument("--quiet-regime-shifts", type=float, default=0.0,
                   help="gradual regime shifts per quiet symbol-day (a new normal, not an event)")
    t.add_argument("--false-alarm-confidence", type=float, default=None,
                   help="judge the false-alarm budget on the Poisson upper bound at this level (default: the count)")
    t.add_argument("--if-missing", action="store_true",
                   help="train only if no model loads (none yet, or one the code can no longer use)")
    t.set_defaults(func=cmd_train)

    f = sub.add_parser("feed", help="produce ticks to the ticks topic")
    fsub = f.add_subparsers(dest="source", required=True)
    fs = fsub.add_parser("synthetic", help="realistic synthetic ticks with labelled injected anomalies")
    fs.add_argument("--symbols", type=int, default=12)
    fs.add_argument("--minutes", type=float, default=60.0, help="live event-time minutes after the backfill")
    fs.add_argument("--backfill-minutes", type=float, default=45.0)
    fs.add_argument("--speed", type=float, default=1.0, help="event-time seconds per wall second (live part)")
    fs.add_argument("--events-per-day", type=float, default=12.0)
    fs.add_argument("--seed", type=int, default=7)
    fs.add_argument("--labels-out", type=Path, default=None, help="write the labels CSV here")
    fs.set_defaults(func=cmd_feed_synthetic)

    from app.collector import cli as collector_cli

    fe = fsub.add_parser("exchange", help="public exchange trade streams (binance, coinbase, okx) over WebSocket")
    collector_cli.add_arguments(fe)
    fe.set_defaults(func=collector_cli.run)

    ff = fsub.add_parser("file", help="recorded ticks (CSV, CSV.gz, Parquet; a file or a directory)")
    ff.add_argument("path", type=Path)
    ff.add_argument("--speed", type=parse_speed, default=None,
                    help="max (default: as fast as possible) or event-time multiple: 1x, 10x, ...")
    ff.add_argument("--topic", default=None, help="target topic (default: the ticks topic setting)")
    ff.set_defaults(func=cmd_feed_file)

    r = sub.add_parser("replay", help="re-consume a range of a ticks topic through the pipeline, isolated from live")
    r.add_argument("--topic", default=None, help="ticks topic to read (default: the ticks topic setting)")
    r.add_argument("--from", dest="start", default="earliest",
                   help="earliest | offset:N | time: ms, ISO-8601 or relative (-7d, -36h)")
    r.add_argument("--to", dest="end", default="latest",
                   help="latest | offset:N (exclusive) | time (inclusive, as --from)")
    r.add_argument("--name", default=None, help="replay name: app id <app_id>-replay-<name> (default: UTC time)")
    r.add_argument("--alerts-topic", default=None, help="where replayed alerts go (default <app id>-alerts)")
    r.add_argument("--labels", type=Path, default=None, help="labels CSV: write the backtest report (needs --out)")
    r.add_argument("--out", type=Path, default=None, help="output directory (alerts.jsonl, summary.json, report)")
    r.add_argument("--model-version", default=None, help="pin the model version (default: the worker's)")
    r.add_argument("--threshold", type=float, default=None, help="alert threshold (default: the worker's)")
    r.add_argument("--batch-size", type=int, default=None, help="records per micro-batch (default: the worker's)")
    r.add_argument("--warmup-minutes", type=float, default=0.0,
                   help="with --from as a time: process this much earlier history first, without alerting")
    r.set_defaults(func=cmd_replay)

    from app import ablation, nab_cmd

    na = sub.add_parser("nab", help="score the detector on the Numenta Anomaly Benchmark (fixed and optimised)")
    nab_cmd.add_arguments(na)
    na.set_defaults(func=nab_cmd.run)
    ab = sub.add_parser("ablation", help="members, ensemble and baselines on the scenario suite and NAB")
    ablation.add_arguments(ab)
    ab.set_defaults(func=ablation.run)

    from app import models_cli, retrain

    rt = sub.add_parser("retrain", help="refit the IsolationForest on recent normal ticks (workers run on)")
    retrain.add_arguments(rt)
    rt.set_defaults(func=retrain.run)

    mo = sub.add_parser("models", help="model registry (Redis): publish a version to every worker, show it")
    models_cli.add_arguments(mo)
    mo.set_defaults(func=models_cli.run)

    sy = sub.add_parser("synth", help="write a seeded labelled synthetic data set (ticks.csv.gz, labels.csv)")
    sy.add_argument("--out", type=Path, required=True)
    sy.add_argument("--symbols", type=int, default=12)
    sy.add_argument("--hours", type=float, default=12.0)
    sy.add_argument("--events-per-day", type=float, default=4.0)
    sy.add_argument("--seed", type=int, default=42)
    sy.add_argument("--quiet-fraction", type=float, default=0.0,
                    help="share of symbols (of each liquidity class) with no event; the ablation's suite uses 0.25")
    # models.synthetic.PROFILE_SETS, spelled out so that building the parser imports no numpy.
    sy.add_argument("--profiles", choices=("default", "large_tick", "sparse"), default="default",
                    help="symbol set: the one training draws from, or a stress set outside its ranges "
                         "(large_tick: one satoshi is 0.5-10%% of the price; sparse: 250-1,700 trades a day)")
    sy.set_defaults(func=cmd_synth)

    d = sub.add_parser("demo", help="broker + worker + synthetic feed; prints alerts")
    d.add_argument("--seconds", type=float, default=None, help="stop after N s and print a JSON summary")
    d.add_argument("--speed", type=float, default=10.0)
    d.add_argument("--symbols", type=int, default=12)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("backtest", help="replay labelled tick files through the pipeline; event-level report")
    b.add_argument("--ticks", type=Path, required=True, help="tick CSV (.csv/.csv.gz) or a directory of them")
    b.add_argument("--labels", type=Path, required=True, help="labels CSV: symbol,start,end[,scenario]")
    b.add_argument("--out", type=Path, required=True, help="output directory (alerts.jsonl, report.json, plots/)")
    b.add_argument("--threshold", type=float, default=None, help="alert threshold in [0, 1] (default: the worker's)")
    b.add_argument("--model-version", default=None, help="model version (default: the worker's, newest)")
    b.add_argument("--batch-size", type=int, default=None, help="micro-batch size (default: the worker's, 1000)")
    b.add_argument("--max-plots", type=int, default=30, help="at most this many event plots")
    b.set_defaults(func=cmd_backtest)

    be = sub.add_parser("bench", help="end-to-end benchmark: throughput, latency, memory vs reference contenders",
                        description="More options: python -m benchmarks.bench --help")
    be.add_argument("--out", type=Path, required=True, help="output directory (bench.json, bench.png, logs)")
    be.add_argument("--ticks", type=int, default=None, help="ticks in the throughput topic (200000; --quick 30000)")
    be.add_argument("--symbols", type=int, default=None, help="symbols (100)")
    be.add_argument("--quick", action="store_true", help="smaller run (< 3 min)")
    be.add_argument("--model-dir", type=Path, default=None, help="model artifacts (artifacts/models)")
    be.add_argument("--rounds", type=int, default=None,
                    help="time each contender's throughput this many times, alternating; medians reported (1)")
    be.add_argument("--no-record", action="store_true", help="do not copy bench.json to benchmarks/results/")
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings.log_level)
    if args.command == "worker":
        sys.argv = [sys.argv[0], "worker", "-l", settings.log_level if settings.log_level != "warning" else "warn"]
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main())
