"""Readers for the Numenta Anomaly Benchmark (NAB) corpus on disk; the scoring itself is in ``models.nab``.

Layout of a NAB directory (a copy of github.com/numenta/NAB, see its ``README.md``)::

    data/<folder>/<file>.csv           timestamp,value          the 58 series
    labels/combined_windows.json       {"<folder>/<file>.csv": [[start, end], ...]}
    config/profiles.json               {"standard": {"CostMatrix": {"tpWeight": ..., ...}}, ...}
    config/thresholds.json             {"<detector>": {"<profile>": {"threshold": ..., "score": ...}}}
    golden/<detector>_scores.csv.gz    file,timestamp,anomaly_score  (published per-row scores)
    results/final_results.json         {"<detector>": {"<profile>": normalised score}}

Files are keyed by their path relative to ``data/`` with ``/`` separators, as in NAB's labels.
Timestamps are returned as ``datetime64[ns]`` arrays in file order (NAB files are not strictly sorted).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.nab import CostProfile

__all__ = [
    "NAB_DIR_ENV",
    "NabSeries",
    "golden_detectors",
    "load_corpus",
    "load_golden_scores",
    "load_profiles",
    "load_published_results",
    "load_thresholds",
    "load_windows",
    "locate_nab_dir",
]

#: Environment variable naming the NAB directory; it overrides the default location.
NAB_DIR_ENV = "CRYPTOTRACE_NAB_DIR"

Windows = dict[str, list[tuple[np.datetime64, np.datetime64]]]


@dataclass(frozen=True, slots=True)
class NabSeries:
    """One NAB file: row timestamps and the per-row values (data values or anomaly scores)."""

    timestamps: NDArray[np.datetime64]
    values: NDArray[np.float64]

    def __len__(self) -> int:
        """Number of rows."""
        return int(self.values.size)


def _is_nab_dir(path: Path) -> bool:
    return (path / "labels" / "combined_windows.json").is_file()


def locate_nab_dir(repo_root: Path | None = None) -> Path | None:
    """Find the NAB directory.

    Parameters
    ----------
    repo_root : pathlib.Path, optional
        Repository root; defaults to this package's parent directory.

    Returns
    -------
    pathlib.Path or None
        ``$CRYPTOTRACE_NAB_DIR`` if set, else ``<repo_root>/../shared/data/nab``, provided it holds
        ``labels/combined_windows.json``; None otherwise.
    """
    env = os.environ.get(NAB_DIR_ENV)
    if env:
        candidate = Path(env).expanduser()
    else:
        root = repo_root if repo_root is not None else Path(__file__).resolve().parents[1]
        candidate = root.parent / "shared" / "data" / "nab"
    return candidate if _is_nab_dir(candidate) else None


def _series(timestamps: list[str], values: list[float]) -> NabSeries:
    return NabSeries(np.array(timestamps, dtype="datetime64[ns]"), np.array(values, dtype=np.float64))


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def load_corpus(nab_dir: Path | str) -> dict[str, NabSeries]:
    """Read every ``data/<folder>/<file>.csv`` (``timestamp,value``).

    Parameters
    ----------
    nab_dir : pathlib.Path or str
        NAB directory.

    Returns
    -------
    dict of str to NabSeries
        Keyed by ``"<folder>/<file>.csv"``, sorted by key.
    """
    data_dir = Path(nab_dir) / "data"
    corpus: dict[str, NabSeries] = {}
    for path in sorted(data_dir.glob("*/*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            if header[:2] != ["timestamp", "value"]:
                raise ValueError(f"{path}: unexpected header {header}")
            rows = [row for row in reader if row]
        corpus[path.relative_to(data_dir).as_posix()] = _series([r[0] for r in rows], [float(r[1]) for r in rows])
    if not corpus:
        raise FileNotFoundError(f"no data/<folder>/<file>.csv under {nab_dir}")
    return corpus


def load_windows(nab_dir: Path | str) -> Windows:
    """Read ``labels/combined_windows.json``: per file, its (start, end) windows as ``datetime64[ns]``."""
    raw = _read_json(Path(nab_dir) / "labels" / "combined_windows.json")
    return {
        name: [(np.datetime64(start, "ns"), np.datetime64(end, "ns")) for start, end in limits]
        for name, limits in raw.items()
    }


def load_profiles(nab_dir: Path | str) -> dict[str, CostProfile]:
    """Read ``config/profiles.json`` into :class:`models.nab.CostProfile` objects keyed by profile name."""
    raw = _read_json(Path(nab_dir) / "config" / "profiles.json")
    return {
        name: CostProfile(
            tp_weight=float(spec["CostMatrix"]["tpWeight"]),
            fp_weight=float(spec["CostMatrix"]["fpWeight"]),
            fn_weight=float(spec["CostMatrix"]["fnWeight"]),
            name=name,
        )
        for name, spec in raw.items()
    }


def load_thresholds(nab_dir: Path | str) -> dict[str, dict[str, float]]:
    """Read ``config/thresholds.json``: detector -> profile -> published threshold.

    The file's ``score`` entries are dropped: they are the optimiser's raw scores and are stale for
    some detectors (knncad lists 0.0).
    """
    raw = _read_json(Path(nab_dir) / "config" / "thresholds.json")
    return {det: {prof: float(spec["threshold"]) for prof, spec in by_prof.items()} for det, by_prof in raw.items()}


def load_published_results(nab_dir: Path | str) -> dict[str, dict[str, float]]:
    """Read ``results/final_results.json``: detector -> profile -> published normalised score."""
    raw = _read_json(Path(nab_dir) / "results" / "final_results.json")
    return {det: {prof: float(v) for prof, v in by_prof.items()} for det, by_prof in raw.items()}


def golden_detectors(nab_dir: Path | str) -> list[str]:
    """Detectors with a ``golden/<detector>_scores.csv.gz`` file, sorted."""
    suffix = "_scores.csv.gz"
    return sorted(p.name[: -len(suffix)] for p in (Path(nab_dir) / "golden").glob(f"*{suffix}"))


def load_golden_scores(nab_dir: Path | str, detector: str) -> dict[str, NabSeries]:
    """Read ``golden/<detector>_scores.csv.gz`` (``file,timestamp,anomaly_score``).

    Parameters
    ----------
    nab_dir : pathlib.Path or str
        NAB directory.
    detector : str
        Detector name, e.g. ``"numenta"``.

    Returns
    -------
    dict of str to NabSeries
        Per file, its timestamps and anomaly scores in file order.
    """
    path = Path(nab_dir) / "golden" / f"{detector}_scores.csv.gz"
    stamps: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[:3] != ["file", "timestamp", "anomaly_score"]:
            raise ValueError(f"{path}: unexpected header {header}")
        for row in reader:
            if not row:
                continue
            name, ts, score = row[0], row[1], row[2]
            if name not in stamps:
                stamps[name], scores[name] = [], []
            stamps[name].append(ts)
            scores[name].append(float(score) if score else float("nan"))
    return {name: _series(stamps[name], scores[name]) for name in sorted(stamps)}
