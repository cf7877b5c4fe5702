"""The worker's numpy forest walk against ONNX Runtime's tree ensembles, microseconds per row by batch size.

Run (ONNX Runtime and its converter are not dependencies of the project; install them first):
``pip install onnxruntime skl2onnx && python -m benchmarks.forest_backends [--batches 1 16 64 512 4096]``

Why: the forests are a large share of the worker's per-tick model cost, and ONNX Runtime is the
maintained C++ engine for scoring them. Both forests are fitted here on seeded random data shaped like
the shipped ones (RandomForest 100 trees, depth 16, ``min_samples_leaf`` 5; IsolationForest 100 trees),
compiled to :class:`models.forests.FlatForest` and converted with skl2onnx; ONNX Runtime runs on one
thread (the worker's event loop owns a core), inputs in float32 as it requires. Each case is timed over
repeated calls (about 20,000 rows per case); ``max_abs_diff_rf`` checks both give the same probabilities.
One JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from models.forests import FlatForest

WIDTH = 24


def _per_row_us(call: Callable[[], Any], rows: int) -> float:
    call()
    reps = max(3, 20_000 // rows)
    t0 = time.perf_counter()
    for _ in range(reps):
        call()
    return (time.perf_counter() - t0) / reps / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 512, 4096])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import onnxruntime as ort
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        sys.stderr.write(f"needs onnxruntime and skl2onnx (pip install onnxruntime skl2onnx): {exc}\n")
        return 2
    from sklearn.ensemble import IsolationForest, RandomForestClassifier

    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(60_000, WIDTH))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + 0.5 * rng.normal(size=len(x)) > 1.5).astype(int)
    rf = RandomForestClassifier(100, max_depth=16, min_samples_leaf=5, random_state=args.seed, n_jobs=-1).fit(x, y)
    iso = IsolationForest(n_estimators=100, random_state=args.seed).fit(x)
    flat_rf, flat_if = FlatForest.from_sklearn(rf), FlatForest.from_sklearn(iso)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    types = [("x", FloatTensorType([None, WIDTH]))]
    opsets = {"": 17, "ai.onnx.ml": 3}
    ort_rf = ort.InferenceSession(to_onnx(rf, initial_types=types, options={id(rf): {"zipmap": False}},
                                          target_opset=opsets).SerializeToString(), opts,
                                  providers=["CPUExecutionProvider"])
    ort_if = ort.InferenceSession(to_onnx(iso, initial_types=types, target_opset=opsets).SerializeToString(), opts,
                                  providers=["CPUExecutionProvider"])
    rows: list[dict[str, Any]] = []
    for n in args.batches:
        xb = rng.normal(size=(n, WIDTH))
        xf = xb.astype(np.float32)
        rows.append({
            "batch": n,
            "rf_numpy_us": round(_per_row_us(partial(flat_rf.predict_proba, xb), n), 2),
            "rf_onnxruntime_us": round(_per_row_us(partial(ort_rf.run, None, {"x": xf}), n), 2),
            "if_numpy_us": round(_per_row_us(partial(flat_if.score_samples, xb), n), 2),
            "if_onnxruntime_us": round(_per_row_us(partial(ort_if.run, None, {"x": xf}), n), 2),
        })
    check = rng.normal(size=(2_000, WIDTH)).astype(np.float32)
    diff = np.abs(ort_rf.run(None, {"x": check})[1][:, 1] - flat_rf.predict_proba(check.astype(np.float64))[:, 1])
    out = {"onnxruntime": ort.__version__, "max_abs_diff_rf": float(diff.max()), "us_per_row": rows}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
