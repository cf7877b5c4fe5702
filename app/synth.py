"""``cryptotrace synth``: write a seeded, labelled synthetic data set as tick and label CSV files.

The files use the documented input formats (see the README), so the same data set feeds
``cryptotrace backtest`` and anyone can regenerate it from the seed.
"""

from __future__ import annotations

import csv
import gzip
import logging
from pathlib import Path

from tqdm import tqdm

from models.synthetic import Label, TickBatch, generate, quiet_symbols, random_injections, stress_profiles

logger = logging.getLogger(__name__)

DEFAULT_START_MS = 1_710_000_000_000  # 2024-03-09 16:00 UTC


def write_ticks_csv(batch: TickBatch, path: Path) -> None:
    """``timestamp,symbol,price,quantity,side`` (gzip when the name ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:  # type: ignore[operator]
        out = csv.writer(fh)
        out.writerow(["timestamp", "symbol", "price", "quantity", "side"])
        for rec in tqdm(batch.records(), total=len(batch), unit="tick", desc="write", mininterval=2.0):
            out.writerow([rec["timestamp"], rec["symbol"], repr(rec["price"]), repr(rec["quantity"]), rec["side"]])


def write_labels_csv(labels: list[Label], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["symbol", "start", "end", "scenario"])
        for lab in labels:
            out.writerow([lab.symbol, lab.start_ms, lab.end_ms, lab.scenario])


def synthetic_set(*, symbols: int, hours: float, seed: int, events_per_day: float, warmup_s: float = 3600.0,
                  start_ms: int = DEFAULT_START_MS, quiet_fraction: float = 0.0,
                  profiles: str = "default") -> tuple[TickBatch, list[Label]]:
    """The recipe of ``cryptotrace synth`` and of the ablation's seeds: the same arguments, the same ticks.

    ``quiet_fraction`` of the symbols of each liquidity class get no event (long quiet stretches).
    ``profiles`` names the symbol set (:data:`models.synthetic.PROFILE_SETS`): the default one, which
    training draws from, or a stress set outside its ranges.
    """
    profiles_ = stress_profiles(profiles, symbols, seed=seed)
    duration = hours * 3600.0
    injections = random_injections(profiles_, start_ms=start_ms, duration_s=duration, seed=seed,
                                   per_symbol_day=events_per_day, warmup_s=warmup_s,
                                   quiet=quiet_symbols(profiles_, quiet_fraction))
    return generate(profiles_, start_ms=start_ms, duration_s=duration, injections=injections, seed=seed)


def write_dataset(out: Path, *, symbols: int, hours: float, seed: int, events_per_day: float,
                  warmup_s: float = 3600.0, start_ms: int = DEFAULT_START_MS,
                  quiet_fraction: float = 0.0, profiles: str = "default") -> tuple[int, int]:
    """Write :func:`synthetic_set` as ``out/ticks.csv.gz`` and ``out/labels.csv``; returns (ticks, labels)."""
    out.mkdir(parents=True, exist_ok=True)
    batch, labels = synthetic_set(symbols=symbols, hours=hours, seed=seed, events_per_day=events_per_day,
                                  warmup_s=warmup_s, start_ms=start_ms, quiet_fraction=quiet_fraction,
                                  profiles=profiles)
    write_ticks_csv(batch, out / "ticks.csv.gz")
    write_labels_csv(labels, out / "labels.csv")
    logger.info("wrote %d ticks and %d labelled events to %s", len(batch), len(labels), out)
    return len(batch), len(labels)
