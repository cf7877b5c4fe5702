"""Cost of scoring rows with the compiled forests of a model: microseconds per row and batch size.

Run: ``python -m benchmarks.forest_scoring [--model-dir artifacts/models] [--batches 1 64 512 4096]``

The forests are the worker's largest per-tick model cost (see the README's profile). Rows are
drawn like the model's inputs (standard-normal z-scores with every 17th row holding a NaN, so
the missing-value path is timed too), then each forest of the newest model scores them in
repeated calls for about ``--seconds`` per case; the median of ``--repeats`` such measurements
is printed, because this VM's speed drifts from second to second. One JSON line.
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
from models.forests import FlatForest


def us_per_row(forest: FlatForest, x: np.ndarray, seconds: float) -> float:
    forest.leaf_sums(x)  # warm caches
    calls, start = 0, time.perf_counter()
    while True:
        forest.leaf_sums(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls / len(x) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path("artifacts/models"))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512, 4096])
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    bundle = load_bundle(args.model_dir)
    rng = np.random.default_rng(0)
    results: dict[str, dict[str, float]] = {}
    for name, forest in (("rforest", bundle.rforest), ("iforest", bundle.iforest)):
        for n in args.batches:
            x = rng.normal(size=(n, forest.n_features_in_))
            x[::17, 0] = np.nan
            runs = [us_per_row(forest, x, args.seconds) for _ in range(args.repeats)]
            results.setdefault(name, {})[str(n)] = round(statistics.median(runs), 2)
    sys.stdout.write(json.dumps({
        "benchmark": "forest_scoring", "model_version": bundle.version, "us_per_row_median": results,
        "trees": {"rforest": bundle.rforest.n_estimators, "iforest": bundle.iforest.n_estimators},
        "depth": {"rforest": bundle.rforest.depth, "iforest": bundle.iforest.depth},
        "command": "python -m benchmarks.forest_scoring " + " ".join(argv or sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
