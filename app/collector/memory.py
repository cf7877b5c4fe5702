"""Memory evidence: tracemalloc snapshots on disk and the allocation sites that grew.

``cryptotrace feed exchange --tracemalloc-dir DIR`` dumps a snapshot every
``--tracemalloc-interval`` seconds (and one at exit) and logs the sites that grew most since
the first. Inspect them later with ``tracemalloc.Snapshot.load(path)`` and ``compare_to``.
tracemalloc roughly halves the collector's throughput: enable it to investigate, not always.
"""

from __future__ import annotations

import asyncio
import logging
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

# Allocations made by tracemalloc itself and by imports are noise for a leak hunt.
_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
]


def rss_bytes() -> int:
    """Resident set size of this process."""
    return int(psutil.Process().memory_info().rss)


def take_snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(_FILTERS)


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 10) -> list[dict[str, Any]]:
    """The ``limit`` source lines whose live allocations grew most between two snapshots."""
    out = []
    for stat in after.compare_to(before, "lineno")[:limit]:
        frame = stat.traceback[0]
        out.append({"site": f"{frame.filename}:{frame.lineno}", "size_diff_bytes": stat.size_diff,
                    "size_bytes": stat.size, "count_diff": stat.count_diff})
    return out


class SnapshotDumper:
    """Periodic tracemalloc snapshots into ``out_dir`` (``collector-0001.tracemalloc``, ...)."""

    def __init__(self, out_dir: Path, interval_s: float = 60.0, *, frames: int = 1, limit: int = 10) -> None:
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.frames = frames
        self.limit = limit
        self.paths: list[Path] = []
        self._first: tracemalloc.Snapshot | None = None
        self._started_here = False

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
            self._started_here = True
        self.dump()

    def dump(self) -> Path:
        snap = take_snapshot()
        path = self.out_dir / f"collector-{len(self.paths) + 1:04d}.tracemalloc"
        snap.dump(str(path))
        self.paths.append(path)
        current, peak = tracemalloc.get_traced_memory()
        if self._first is None:
            self._first = snap
            logger.info("tracemalloc snapshot %s: traced %.1f MB, RSS %.1f MB", path, current / 1e6, rss_bytes() / 1e6)
        else:
            growth = top_growth(self._first, snap, self.limit)
            logger.info("tracemalloc snapshot %s: traced %.1f MB (peak %.1f), RSS %.1f MB; grew most since "
                        "the first: %s", path, current / 1e6, peak / 1e6, rss_bytes() / 1e6,
                        "; ".join(f"{g['site']} {g['size_diff_bytes']:+d} B" for g in growth[:5]))
        return path

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.dump()

    def stop(self) -> None:
        if tracemalloc.is_tracing():
            self.dump()
            if self._started_here:
                tracemalloc.stop()
