"""Cost per tick of the pure core by the number of ticks folded and scored in one step.

Run: ``python -m benchmarks.step_size [--steps 4096 1024 512 256 128] [--repeats 10] [--symbols 100]``

``Pipeline.process`` cuts a batch into steps of ``models.pipeline.MAX_TICKS_PER_STEP`` ticks; every
tick's features, statistics and model row live until its step is scored. This times the step itself
(``Pipeline._step``, what ``process`` calls per step) at each size, on the same ticks (synthetic,
``--symbols`` default symbols over 30 minutes, at most 200,000 ticks), from fresh state each time, with
the worker's garbage-collection settings (``app.cli``: loaded objects frozen, young threshold 50,000)
and the newest model in ``artifacts/models``. The sizes run interleaved, in alternating order, in one
process, so that this VM's drift over minutes falls on all of them alike; the median of the repeats is
what to compare. One JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

from app.model_store import load_bundle
from models._native import core_kind
from models.pipeline import Pipeline, SymbolSnapshot
from models.synthetic import default_profiles, generate
from models.ticks import Tick


def us_per_tick(pipeline: Pipeline, ticks: list[Tick], step: int) -> float:
    snaps: dict[str, SymbolSnapshot] = {}
    start = time.perf_counter()
    for lo in range(0, len(ticks), step):
        pipeline._step(snaps, ticks[lo:lo + step], None)
    return (time.perf_counter() - start) / len(ticks) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, nargs="+", default=[4096, 1024, 512, 256, 128])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--symbols", type=int, default=100)
    args = p.parse_args(argv)
    if min(args.steps) < 1 or args.repeats < 1:
        p.error("steps and repeats must be >= 1")

    profiles = default_profiles(args.symbols, seed=1)
    batch, _ = generate(profiles, start_ms=1_710_000_000_000, duration_s=1800.0, seed=1)
    ticks = list(batch.ticks())[:200_000]
    pipeline = Pipeline(bundle=load_bundle(Path("artifacts/models")))
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    runs: dict[int, list[float]] = {s: [] for s in args.steps}
    for r in range(args.repeats):
        for step in args.steps if r % 2 == 0 else args.steps[::-1]:
            runs[step].append(round(us_per_tick(pipeline, ticks, step), 2))
    sys.stdout.write(json.dumps({
        "benchmark": "step_size", "ticks": len(ticks), "symbols": args.symbols, "core": core_kind(),
        "model_version": pipeline.model_version,
        "median_us_per_tick": {str(s): statistics.median(v) for s, v in runs.items()},
        "runs_us_per_tick": {str(s): v for s, v in runs.items()},
        "command": "python -m benchmarks.step_size " + " ".join(argv or sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
