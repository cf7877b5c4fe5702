"""``cryptotrace nab``: stream every NAB series through the product pipeline and score it with NAB's rules.

Each series is mapped onto ticks by :func:`models.univariate.value_ticks` (one row = one 10-second
bar, value -> log-price scaled by the probationary rows, constant quantity; see that module) and
streamed, in micro-batches, through the :class:`models.pipeline.Pipeline` the worker would build
(same model, same threshold; ``--stat-only`` for the statistical layer alone), with fresh state per
series. The per-tick scores become per-row anomaly scores with the product's alert cooldown
(300 s = 30 rows): a detection is a row where the product raises an alert, scored by :mod:`models.nab`.

Outputs in ``--out``:

* ``scores.csv.gz``: ``file,timestamp,anomaly_score``, one row per NAB row, in file order (the
  format of NAB's published results, so NAB's own scorer reads it too);
* ``nab.json``: ``fixed`` (the threshold the worker alerts at, chosen before NAB was looked at:
  0.5 for the statistical layer alone, the model's training-time threshold otherwise), and
  ``optimised`` (each profile at the threshold that maximises it over this corpus, as on NAB's
  scoreboard: an upper bound, not a deployable figure).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from tqdm import tqdm

from app import nab_data
from app.settings import Settings
from models import nab
from models.ensemble import LOGIT_BOUND, MEMBERS, RecordingBundle
from models.pipeline import Pipeline, SymbolSnapshot
from models.ticks import Tick
from models.univariate import alarm_scores, cooldown_alarms, value_ticks

logger = logging.getLogger(__name__)

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
_DEFAULT_PROFILES = {p.name: p for p in (nab.STANDARD, nab.REWARD_LOW_FP_RATE, nab.REWARD_LOW_FN_RATE)}


@dataclass
class StreamScores:
    """Per-tick scores of one stream: the pipeline's, and each member's when a model is loaded.

    ``members`` has one column per :data:`models.ensemble.MEMBERS` (calibrated probabilities, 0 in
    the grace period, as the pipeline's own score); None without a model. ``member_log_odds``: the
    same members' calibrated log-odds (what every combination rule reads; ``-LOGIT_BOUND`` in the
    grace period).
    """

    scores: npt.NDArray[np.float64]
    members: npt.NDArray[np.float64] | None
    member_log_odds: npt.NDArray[np.float64] | None = None


def stream(pipeline: Pipeline, ticks: Sequence[Tick], batch_size: int,
           snapshots: dict[str, SymbolSnapshot] | None = None,
           progress: Callable[[int], Any] | None = None) -> StreamScores:
    """All ``ticks`` (event-time order) through ``pipeline`` in micro-batches of ``batch_size``."""
    if pipeline.bundle is not None and not isinstance(pipeline.bundle, RecordingBundle):
        pipeline = Pipeline(pipeline.config, RecordingBundle.wrap(pipeline.bundle))
    bundle = pipeline.bundle if isinstance(pipeline.bundle, RecordingBundle) else None
    snaps: dict[str, SymbolSnapshot] = {} if snapshots is None else snapshots
    scores = np.zeros(len(ticks))
    members = np.zeros((len(ticks), len(MEMBERS))) if bundle is not None else None
    log_odds = np.full((len(ticks), len(MEMBERS)), -LOGIT_BOUND) if bundle is not None else None
    for lo in range(0, len(ticks), batch_size):
        chunk = ticks[lo:lo + batch_size]
        if bundle is not None:
            bundle.reset()
        res = pipeline.process(snaps, chunk)
        s = np.asarray(res.scores, dtype=np.float64)
        scores[lo:lo + len(chunk)] = s
        recorded = bundle.recorded_probs if bundle is not None else None
        if members is not None and bundle is not None and recorded is not None:
            probs = np.array(recorded, dtype=np.float64)
            inactive = s == 0.0  # the grace period: the pipeline scores 0, so do the members
            probs[inactive] = 0.0
            members[lo:lo + len(chunk)] = probs
            recorded_log_odds = bundle.recorded_log_odds
            if log_odds is not None and recorded_log_odds is not None:
                lo_chunk = np.array(recorded_log_odds, dtype=np.float64)
                lo_chunk[inactive] = -LOGIT_BOUND
                log_odds[lo:lo + len(chunk)] = lo_chunk
        if progress is not None:
            progress(len(chunk))
    return StreamScores(scores, members, log_odds)


def cooldown_rows(pipeline: Pipeline) -> int:
    """The pipeline's alert cooldown in rows of the one-row-per-bar mapping (300 s / 10 s = 30)."""
    return int(round(pipeline.config.cooldown_s / pipeline.config.features.bar_seconds))


def score_corpus_streams(
    pipeline: Pipeline, corpus: Mapping[str, nab_data.NabSeries], batch_size: int, progress: bool = True
) -> dict[str, StreamScores]:
    """Per-row pipeline scores of every NAB file (fresh state per file)."""
    out: dict[str, StreamScores] = {}
    bar_ms = int(round(pipeline.config.features.bar_seconds * 1000))
    total = sum(len(s) for s in corpus.values())
    with tqdm(total=total, unit="row", desc="nab", file=sys.stderr, mininterval=1.0, disable=not progress) as bar:
        for name, series in corpus.items():
            ticks = value_ticks(series.values, nab.probation_length(len(series)), bar_ms=bar_ms)
            out[name] = stream(pipeline, ticks, batch_size, progress=bar.update)
    return out


#: Thresholds the optimiser tries: linear (uncalibrated statistical scores spread over [0, 1]) plus
#: logit-spaced (calibrated scores crowd near 0 and 1), as the backtest's threshold curve. The logit
#: grid runs to 36, where float64 probabilities end (sigmoid(36.7) is 1.0): a method whose strongest
#: scores lie past log-odds 14 (the members' bound is 50) may put its threshold among them; 1.0 last
#: (only saturated scores alarm).
CANDIDATES = np.unique(np.concatenate([
    np.round(np.linspace(0.01, 0.99, 99), 9), 1.0 / (1.0 + np.exp(-np.linspace(-4.0, 36.0, 401))), [1.0]]))


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _at(layouts: Mapping[str, nab.FileLayout], raw: Mapping[str, npt.NDArray[np.float64]],
        profiles: Mapping[str, nab.CostProfile], threshold: float, rows: int) -> dict[str, nab.CorpusScore]:
    alarms = {name: cooldown_alarms(raw[name], threshold, rows).astype(np.float64) for name in layouts}
    return {name: nab.score_corpus(layouts, alarms, profiles[name], 0.5) for name in PROFILE_NAMES}


def nab_scores(
    layouts: Mapping[str, nab.FileLayout], raw: Mapping[str, npt.NDArray[np.float64]],
    profiles: Mapping[str, nab.CostProfile], threshold: float | None, cooldown_rows: int,
    candidates: npt.NDArray[np.float64] = CANDIDATES,
) -> dict[str, Any]:
    """NAB results of per-row scores ``raw`` when a detection is a product alert (score ``>=`` the
    threshold, then ``cooldown_rows`` rows of silence): ``fixed`` at ``threshold`` (omitted when None)
    and ``optimised``, each profile at its best threshold among ``candidates`` (the alert rule is
    replayed at every candidate, so the cooldown is exact there too)."""
    out: dict[str, Any] = {}
    if threshold is not None:
        at = _at(layouts, raw, profiles, threshold, cooldown_rows)
        std = at["standard"]
        out["fixed"] = {"threshold": threshold, **{k: round(v.normalised, 2) for k, v in at.items()},
                        "detected_windows": std.detected_windows, "windows": std.n_windows,
                        "false_positives": std.false_positives}
    best: dict[str, tuple[float, float, nab.CorpusScore]] = {}
    for thr in sorted({*candidates.tolist(), np.inf, *([threshold] if threshold is not None else [])}):
        for name, res in _at(layouts, raw, profiles, float(thr), cooldown_rows).items():
            if name not in best or res.normalised > best[name][0] + 1e-9:
                best[name] = (res.normalised, float(thr), res)
    std_best = best["standard"][2]
    out["optimised"] = {
        # None = never alarm (a threshold above every score) was best.
        "threshold": _finite(best["standard"][1]), "thresholds": {k: _finite(v[1]) for k, v in best.items()},
        **{k: round(v[0], 2) for k, v in best.items()},
        "detected_windows": std_best.detected_windows, "false_positives": std_best.false_positives,
    }
    return out


def load_profiles(nab_dir: Path) -> dict[str, nab.CostProfile]:
    try:
        found = nab_data.load_profiles(nab_dir)
    except FileNotFoundError:
        found = {}
    return {name: found.get(name, _DEFAULT_PROFILES[name]) for name in PROFILE_NAMES}


def write_scores_csv(path: Path, corpus: Mapping[str, nab_data.NabSeries],
                     scores: Mapping[str, npt.NDArray[np.float64]]) -> None:
    """``file,timestamp,anomaly_score`` (gzip), one row per NAB row, timestamps as in NAB's files."""
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write("file,timestamp,anomaly_score\n")
        for name, series in corpus.items():
            stamps = np.datetime_as_string(series.timestamps, unit="s")
            fh.writelines(f"{name},{str(t).replace('T', ' ')},{s:.6f}\n"
                          for t, s in zip(stamps.tolist(), scores[name].tolist(), strict=True))


def run_nab(settings: Settings, data: Path, out: Path, *, model_version: str | None = None,
            threshold: float | None = None, stat_only: bool = False, batch_size: int | None = None,
            progress: bool = True) -> dict[str, Any]:
    """The command: score the corpus, write ``scores.csv.gz`` and ``nab.json``, return the summary."""
    from app.backtest import build_pipeline
    from app.factory import pipeline_config

    t0 = time.perf_counter()
    corpus = nab_data.load_corpus(data)
    windows = nab_data.load_windows(data)
    layouts = nab.layout_corpus({k: s.timestamps for k, s in corpus.items()}, windows)
    profiles = load_profiles(data)
    if stat_only:
        cfg = pipeline_config(settings.model_copy(update={"alert_threshold": threshold}), None)
        pipeline = Pipeline(cfg, None)
    else:
        pipeline = build_pipeline(settings, model_version, threshold)
    rows = cooldown_rows(pipeline)
    logger.info("NAB: %d files, %d rows, model %s, threshold %.4f, cooldown %d rows", len(corpus),
                sum(len(s) for s in corpus.values()), pipeline.model_version, pipeline.config.alert_threshold, rows)
    streams = score_corpus_streams(pipeline, corpus, batch_size or settings.batch_size, progress)
    thr = pipeline.config.alert_threshold
    raw = {name: st.scores for name, st in streams.items()}
    per_row = {name: alarm_scores(s, thr, rows) for name, s in raw.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_scores_csv(out / "scores.csv.gz", corpus, per_row)
    result = nab_scores(layouts, raw, profiles, thr, rows)
    # scores.csv.gz scored by NAB's plain rule at the fixed threshold gives the same figure.
    check = nab.score_corpus(layouts, per_row, profiles["standard"], thr).normalised
    result["fixed"]["scores_csv_reproduces_fixed"] = abs(check - result["fixed"]["standard"]) < 0.01
    result["fixed"]["how_chosen"] = (
        "the threshold the worker alerts at, fixed before NAB was scored: "
        + ("0.5, the statistical layer's default" if pipeline.bundle is None
           else "the model's, chosen by event-level F1 on synthetic training data")
        + (" (overridden by --threshold)" if threshold is not None else ""))
    result["optimised"]["how_chosen"] = ("per profile, the threshold (of a fixed grid) that maximises the score on "
                                         "this corpus, as NAB's scoreboard does: an upper bound, not a deployable "
                                         "figure")
    summary: dict[str, Any] = {
        "detector": {"model_version": pipeline.model_version,
                     "combination": None if pipeline.bundle is None else pipeline.bundle.combination,
                     "cooldown_rows": rows, "mapping": "models.univariate.value_ticks: one row = one "
                     "10 s bar, price = 100 exp(0.01 (v - median) / (1.4826 MAD)) over the probationary rows, "
                     "quantity 1"},
        **result,
        "files": len(corpus), "rows": sum(len(s) for s in corpus.values()), "windows": result["fixed"]["windows"],
        "published_for_comparison": {"ARTime": 74.9, "Numenta HTM": 70.5, "CAD OSE": 69.9, "KNN CAD": 58.0,
                                     "Random Cut Forest": 51.7, "Windowed Gaussian": 39.6, "random": 11.0,
                                     "never-alarm": 0.0},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "nab.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryptotrace nab``."""
    parser.add_argument("--data", type=Path, default=None,
                        help="NAB directory (default: $CRYPTOTRACE_NAB_DIR, else ../shared/data/nab)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (scores.csv.gz, nab.json)")
    parser.add_argument("--model-version", default=None, help="model version (default: the worker's, newest)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="fixed threshold (default: the worker's; do not pick it by looking at NAB)")
    parser.add_argument("--stat-only", action="store_true", help="the statistical layer alone, no model")
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch size (default: the worker's)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``cryptotrace nab``: prints a one-line JSON summary; exit 2 on bad input."""
    from models.errors import ConfigError

    data = args.data or nab_data.locate_nab_dir()
    if data is None:
        logger.error("nab failed: no NAB directory (use --data or set %s)", nab_data.NAB_DIR_ENV)
        return 2
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        logger.error("nab failed: threshold must be in [0, 1], got %s", args.threshold)
        return 2
    try:
        summary = run_nab(settings, Path(data), args.out, model_version=args.model_version, threshold=args.threshold,
                          stat_only=args.stat_only, batch_size=args.batch_size)
    except (OSError, ValueError, KeyError, ConfigError) as exc:
        logger.error("nab failed: %s", exc)
        return 2
    keys = ("fixed", "optimised", "detector")
    sys.stdout.write(orjson.dumps({"out": str(args.out), **{k: summary[k] for k in keys}}).decode() + "\n")
    return 0
