"""Cost of scoring rows with the compiled forests of a model: microseconds per row and batch size.

Run: ``python -m benchmarks.forest_scoring [--model-dir artifacts/models] [--batches 1 64 512 4096]
[--rows normal|pipeline] [--walk native numpy]``

The forests are the worker's largest per-tick model cost (see the README's profile). Rows are
either drawn like the model's inputs (``normal``: standard-normal z-scores with every 17th row
holding a NaN, so the missing-value path is timed too) or are the model's real input rows
(``pipeline``: the statistical layer's rows for six synthetic symbols over an hour, seed 2, the
ones the worker scores; where rows end in a tree, so how deep a walk goes, depends on them), then
each forest of the newest model scores them in
repeated calls for about ``--seconds`` per case; the median of ``--repeats`` such measurements
is printed, because this VM's speed drifts from second to second. ``--walk`` times the C walk
(``native``, built by ``make install``) and the numpy walk side by side, the same rows for both.
One JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from app.model_store import load_bundle
from models.ensemble import ModelBundle
from models.forests import WALK, FlatForest
from models.pipeline import Pipeline, SymbolSnapshot
from models.synthetic import default_profiles, generate


def us_per_row(forest: FlatForest, x: np.ndarray, seconds: float, walk: str = WALK) -> float:
    forest.leaf_sums(x, walk=walk)  # warm caches
    calls, start = 0, time.perf_counter()
    while True:
        forest.leaf_sums(x, walk=walk)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls / len(x) * 1e6


def pipeline_rows(bundle: ModelBundle) -> np.ndarray:
    """The forests' input rows of six synthetic symbols over one hour (seed 2), as the worker builds them."""
    profiles = default_profiles(6, seed=2)
    batch, _ = generate(profiles, start_ms=1_710_000_000_000, duration_s=3600, seed=2)
    ticks = list(batch.ticks())
    pipeline, rows = Pipeline(bundle=bundle), []
    snaps: dict[str, SymbolSnapshot] = {}
    for lo in range(0, len(ticks), 1000):
        rows.extend(pipeline.process(snaps, ticks[lo:lo + 1000]).model_rows)
    return np.asarray(rows, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path("artifacts/models"))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512, 4096])
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rows", choices=("normal", "pipeline"), default="normal")
    p.add_argument("--walk", choices=("native", "numpy"), nargs="+", default=[WALK])
    args = p.parse_args(argv)

    bundle = load_bundle(args.model_dir)
    rng = np.random.default_rng(0)
    real = pipeline_rows(bundle) if args.rows == "pipeline" else None
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, forest in (("rforest", bundle.rforest), ("iforest", bundle.iforest)):
        for n in args.batches:
            if real is not None:
                x = real[rng.integers(0, len(real), size=n)]
            else:
                x = rng.normal(size=(n, forest.n_features_in_))
                x[::17, 0] = np.nan
            runs: dict[str, list[float]] = {walk: [] for walk in args.walk}
            for _ in range(args.repeats):
                for walk in args.walk:  # alternating, so the VM's drift hits every walk alike
                    runs[walk].append(us_per_row(forest, x, args.seconds, walk))
            for walk, times in runs.items():
                results.setdefault(walk, {}).setdefault(name, {})[str(n)] = round(statistics.median(times), 2)
    sys.stdout.write(json.dumps({
        "benchmark": "forest_scoring", "model_version": bundle.version, "rows": args.rows,
        "us_per_row_median": results,
        "trees": {"rforest": bundle.rforest.n_estimators, "iforest": bundle.iforest.n_estimators},
        "depth": {"rforest": bundle.rforest.depth, "iforest": bundle.iforest.depth},
        "command": "python -m benchmarks.forest_scoring " + " ".join(argv or sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
