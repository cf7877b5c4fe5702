"""Event-free synthetic symbol-days for the threshold choice of ``cryptotrace train`` (``--quiet-days``).

Their false alarms count in the threshold choice (:class:`models.training.QuietAlarms`). "Event-free"
means no manipulation: ``regime_shifts_per_day`` gradual regime shifts are injected, because a new
normal is part of ordinary trading and an alarm there is a false alarm (as the ablation counts it);
quiet days without them hid that source of false alarms from the budget. Feature rows
cost ~50 us a tick in Python and 24 quiet symbol-days are ~5 million ticks, so the symbols are split
between processes: each generates its own symbols' ticks (a symbol's ticks depend only on the seed and
its name, so the split changes nothing) and builds their rows; the parent joins the arrays.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm

from models.pipeline import PipelineConfig
from models.synthetic import SymbolProfile, generate, random_injections
from models.training import Dataset, build_dataset

logger = logging.getLogger(__name__)


def _rows(profiles: Sequence[SymbolProfile], start_ms: int, duration_s: float, seed: int,
          config: PipelineConfig, regime_shifts_per_day: float = 0.0, bar: int = 0) -> Dataset:
    # A symbol's shifts depend only on (seed, symbol): the split between processes changes nothing.
    shifts = random_injections(profiles, start_ms=start_ms, duration_s=duration_s, seed=seed,
                               per_symbol_day=regime_shifts_per_day, scenarios=("regime_shift",))
    batch, _ = generate(profiles, start_ms=start_ms, duration_s=duration_s, injections=shifts, seed=seed)
    with tqdm(total=len(batch), unit="tick", desc=f"quiet {bar + 1}", position=bar, file=sys.stderr,
              mininterval=2.0) as progress:
        return build_dataset(batch.ticks(), [], config, progress=progress.update)


def join(parts: Sequence[Dataset]) -> Dataset:
    """One data set of event-free parts (row order: part by part)."""
    parts = [p for p in parts if len(p.y)]
    if not parts:
        return Dataset(np.zeros((0, 0)), np.zeros(0), np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64))
    if any(p.windows for p in parts):
        raise ValueError("join() takes event-free data sets only")
    spans: dict[str, tuple[int, int]] = {}
    for p in parts:
        spans.update(p.spans)
    return Dataset(
        np.vstack([p.x for p in parts]), np.concatenate([p.stat for p in parts]),
        np.concatenate([p.y for p in parts]), np.concatenate([p.t for p in parts]),
        np.concatenate([p.symbol for p in parts]), np.concatenate([p.train for p in parts]), (), spans,
        np.concatenate([p.event for p in parts]),
    )


def quiet_dataset(profiles: Sequence[SymbolProfile], *, start_ms: int, duration_s: float, seed: int,
                  config: PipelineConfig, regime_shifts_per_day: float = 0.0,
                  processes: int | None = None) -> Dataset:
    """Feature rows of ``profiles`` without manipulation events (``regime_shifts_per_day`` regime shifts,
    labelled nowhere), built in ``processes`` (default: one per core)."""
    processes = max(1, min(processes or os.cpu_count() or 1, len(profiles)))
    # Liquid symbols carry nearly all the ticks: deal them out by rate so each process gets its share.
    ordered = sorted(profiles, key=lambda p: (-p.trades_per_s, p.symbol))
    groups = [ordered[i::processes] for i in range(processes)]
    logger.info("quiet data: %d symbols x %.1f h in %d processes", len(profiles), duration_s / 3600, processes)
    if processes == 1:
        return _rows(profiles, start_ms, duration_s, seed, config, regime_shifts_per_day)
    # fork: the children inherit the loaded modules (spawn would import numpy and scikit-learn again).
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = list(pool.map(_rows, groups, [start_ms] * processes, [duration_s] * processes,
                              [seed] * processes, [config] * processes,
                              [regime_shifts_per_day] * processes, range(processes)))
    return join(parts)
