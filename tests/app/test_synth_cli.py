"""``cryptotrace synth``: the files it writes, and symbols left quiet as in the ablation's suite."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from app.cli import main
from models.synthetic import default_profiles, quiet_symbols, stress_profiles


def _label_symbols(out: Path) -> set[str]:
    with (out / "labels.csv").open() as fh:
        return {row["symbol"] for row in csv.DictReader(fh)}


def test_quiet_fraction_leaves_the_ablations_quiet_symbols_without_events(tmp_path: Path) -> None:
    args = ["synth", "--symbols", "8", "--hours", "3", "--events-per-day", "48", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "all")]) == 0
    assert main([*args, "--out", str(tmp_path / "quiet"), "--quiet-fraction", "0.25"]) == 0
    quiet = set(quiet_symbols(default_profiles(8, seed=5), 0.25))
    assert len(quiet) == 2
    # Without the option some of those symbols get events (48 a day each over 3 h); with it, none does.
    assert _label_symbols(tmp_path / "all") & quiet
    assert not _label_symbols(tmp_path / "quiet") & quiet
    with gzip.open(tmp_path / "quiet" / "ticks.csv.gz", "rt") as fh:
        ticked = {row["symbol"] for row in csv.DictReader(fh)}
    assert quiet <= ticked  # still traded: quiet, not absent


def test_a_stress_profile_set_writes_its_own_symbols(tmp_path: Path) -> None:
    args = ["synth", "--symbols", "3", "--hours", "2", "--seed", "5", "--profiles", "large_tick"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    with gzip.open(tmp_path / "ticks.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["symbol"] for row in rows} == {p.symbol for p in stress_profiles("large_tick", 3, seed=5)}
    assert all(float(row["price"]) <= 1e-5 for row in rows)
