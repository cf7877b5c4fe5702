"""Cost of turning the pipeline's per-tick input rows (lists of floats) into the forests' array.

Run: ``python -m benchmarks.row_packing [--batch 1000] [--repeats 5]``

The rows are the model's real input rows (``benchmarks.forest_scoring.pipeline_rows``: six synthetic
symbols over an hour, seed 2) as the pipeline hands them over, lists of Python floats, cut into
batches of ``--batch``. Each repeat times ``np.asarray(rows, dtype=np.float64)`` and the C packing
(``models/_rowpack.pyx``) on the same batches, alternating; the median of the repeats is printed in
microseconds per row. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.model_store import load_bundle
from benchmarks.forest_scoring import pipeline_rows
from models import ensemble


def us_per_row(pack: Callable[[list[list[float]]], np.ndarray], batches: list[list[list[float]]]) -> float:
    rows = sum(len(b) for b in batches)
    start = time.perf_counter()
    for b in batches:
        pack(b)
    return (time.perf_counter() - start) / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path("artifacts/models"))
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if ensemble._rowpack is None:
        sys.stderr.write("the C row packing is not built (`make install`)\n")
        return 2
    rows = pipeline_rows(load_bundle(args.model_dir)).tolist()
    batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)]
    width = len(rows[0])
    packers: dict[str, Callable[[list[list[float]]], np.ndarray]] = {
        "numpy": lambda b: np.asarray(b, dtype=np.float64),
        "native": lambda b: ensemble._rowpack.pack_rows(b, width),
    }
    runs: dict[str, list[float]] = {name: [] for name in packers}
    for _ in range(args.repeats):
        for name, pack in packers.items():  # alternating, so the VM's drift hits both alike
            runs[name].append(us_per_row(pack, batches))
    sys.stdout.write(json.dumps({
        "benchmark": "row_packing", "rows": len(rows), "width": width, "batch": args.batch,
        "us_per_row_median": {name: round(statistics.median(v), 3) for name, v in runs.items()},
        "command": "python -m benchmarks.row_packing " + " ".join(argv if argv is not None else sys.argv[1:]),
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
