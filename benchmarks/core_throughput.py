"""Throughput of the pure detection core (no Kafka, no Faust): ticks/s through ``Pipeline.process``.

Run: ``python -m benchmarks.core_throughput [--symbols 6] [--hours 3] [--batch 1000] [--model]``
(``CRYPTOTRACE_CORE=interpreted`` in front: the interpreted sources; the JSON's ``core`` says which ran).

Synthetic ticks are generated first (not timed), then fed in micro-batches as the worker does.
Prints one JSON line. This isolates the per-tick Python cost (features + statistical layer +
batch model scoring) from the framework and broker costs that the end-to-end benchmark measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from models._native import core_kind, forest_walk
from models.pipeline import Pipeline, SymbolSnapshot
from models.synthetic import default_profiles, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--symbols", type=int, default=6)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", action="store_true", help="load the newest model from artifacts/models")
    args = p.parse_args(argv)

    bundle = None
    if args.model:
        from app.model_store import load_bundle

        bundle = load_bundle(Path("artifacts/models"))
    profiles = default_profiles(args.symbols, seed=args.seed)
    batch, _ = generate(profiles, start_ms=1_710_000_000_000, duration_s=args.hours * 3600, seed=args.seed)
    ticks = list(batch.ticks())
    pipeline = Pipeline(bundle=bundle)
    snaps: dict[str, SymbolSnapshot] = {}
    alerts = 0
    start = time.perf_counter()
    for i in range(0, len(ticks), args.batch):
        alerts += len(pipeline.process(snaps, ticks[i : i + args.batch]).alerts)
    elapsed = time.perf_counter() - start
    sys.stdout.write(json.dumps({
        "benchmark": "core_throughput", "ticks": len(ticks), "seconds": round(elapsed, 3),
        "ticks_per_s": round(len(ticks) / elapsed), "us_per_tick": round(elapsed / len(ticks) * 1e6, 2),
        "alerts": alerts, "model_version": pipeline.model_version, "batch": args.batch, "core": core_kind(),
        "forest_walk": forest_walk(),
        "command": "python -m benchmarks.core_throughput " + " ".join(argv or sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
