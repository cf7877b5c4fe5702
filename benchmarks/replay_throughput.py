"""Replay throughput: ticks/s of ``cryptotrace replay`` over a topic on the embedded broker.

Run: ``python -m benchmarks.replay_throughput [--symbols 8] [--hours 3] [--model-dir artifacts/models]``

Seeded synthetic ticks are produced first (keyed, one tick a record, as `feed file` does; not
timed), then one replay reads the whole topic through the pipeline and publishes its alerts, as
the command does. Prints one JSON line with the command that reproduces it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from app.broker import EmbeddedBroker
from app.feed import produce_ticks
from app.model_store import load_bundle, newest_version
from app.replay import Bound, ReplayOptions, run_replay
from app.topics import ensure_topics
from models.pipeline import Pipeline, PipelineConfig
from models.synthetic import default_profiles, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--symbols", type=int, default=8)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model-dir", type=Path, default=None, help="score with the newest model found here")
    args = p.parse_args(argv)

    bundle = None
    if args.model_dir is not None and newest_version(args.model_dir):
        bundle = load_bundle(args.model_dir)
    profiles = default_profiles(args.symbols, seed=args.seed)
    batch, _ = generate(profiles, start_ms=1_710_000_000_000, duration_s=args.hours * 3600, seed=args.seed)
    records = list(batch.records())
    with EmbeddedBroker(0) as broker:
        ensure_topics(broker.url, ["ticks"], args.partitions)
        t0 = time.perf_counter()
        asyncio.run(produce_ticks(broker.url, "ticks", records))
        produce_s = time.perf_counter() - t0
        threshold = bundle.threshold if bundle is not None else 0.5
        opts = ReplayOptions(topic="ticks", start=Bound("earliest"), end=Bound("latest"), app_id="bench-replay",
                             alerts_topic="bench-replay-alerts", live_alerts_topic="alerts",
                             batch_size=args.batch, progress=False)
        summary = run_replay(broker.url, opts, Pipeline(PipelineConfig(alert_threshold=threshold), bundle))
    assert summary["ticks_processed"] == len(records), summary
    sys.stdout.write(json.dumps({
        "benchmark": "replay_throughput", "ticks": len(records), "symbols": args.symbols,
        "partitions": args.partitions, "seconds": summary["seconds"], "ticks_per_s": summary["ticks_per_s"],
        "alerts": summary["alerts"], "model_version": summary["model_version"], "produce_s": round(produce_s, 2),
        "command": "python -m benchmarks.replay_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
