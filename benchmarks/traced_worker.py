"""Benchmark-only shim: run ``app.cli worker`` under tracemalloc and dump what grows.

``python -m benchmarks.traced_worker OUT_DIR EVERY_S worker`` starts tracemalloc (one frame)
``EVERY_S`` seconds after the worker starts, takes a baseline snapshot ``EVERY_S`` later, and every
``EVERY_S`` seconds after that writes ``OUT_DIR/tracemalloc-NNN.json``: the top 25 allocation
sites by growth since the baseline (file:line of the innermost project or library frame, bytes
and blocks now and their growth) plus tracemalloc's own totals. A daemon thread does it, so the
event loop is not touched; the product code is not changed. The sites are grouped by their
innermost frame, so one frame is all that is stored: with ten, the worker managed about 240 ticks/s
(single-tick records, one core saturated) against ~6,800 without tracemalloc. Even so it slows
allocation-heavy code down several times, so soak throughput and latency are measured without it and
memory growth with it at a lower rate (``benchmarks.soak --tracemalloc``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _dump(out: Path, index: int, base: tracemalloc.Snapshot, t0: float) -> None:
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ])
    stats = snap.compare_to(base, "lineno")
    top = [{
        "site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
        "size_kb": round(s.size / 1024, 1), "growth_kb": round(s.size_diff / 1024, 1),
        "blocks": s.count, "growth_blocks": s.count_diff,
    } for s in stats[:25]]
    current, peak = tracemalloc.get_traced_memory()
    body = {"index": index, "uptime_s": round(time.monotonic() - t0, 1), "traced_mb": round(current / 2**20, 2),
            "traced_peak_mb": round(peak / 2**20, 2), "top_growth": top}
    (out / f"tracemalloc-{index:03d}.json").write_text(json.dumps(body, indent=1))


def _loop(out: Path, every: float) -> None:
    t0 = time.monotonic()
    # Tracing starts once the worker is up: imports under tracemalloc take minutes, and what
    # matters is what grows while it runs (allocations made before the start are not traced).
    time.sleep(every)
    tracemalloc.start(1)  # sites are grouped by their innermost frame: one is all that is used
    time.sleep(every)
    base = tracemalloc.take_snapshot()
    index = 0
    while True:
        time.sleep(every)
        index += 1
        _dump(out, index, base, t0)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[2] != "worker":
        sys.stderr.write("usage: python -m benchmarks.traced_worker OUT_DIR EVERY_S worker\n")
        return 2
    out, every = Path(args[0]), float(args[1])
    out.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=_loop, args=(out, every), daemon=True, name="tracemalloc-dump").start()
    from app.cli import main as cli_main

    sys.argv = [sys.argv[0], "worker"]
    return cli_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
