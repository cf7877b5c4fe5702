"""Training: labelled ticks -> fitted forests, member calibration and stacker.

The data set is built by running ticks through the same feature engine and statistical
layer the worker uses, so the forests see exactly what they will score live. Rows of a
symbol still in its grace period are left out (the worker does not score them either).

The split is by time, never random: the first ``fit_fraction`` of the time span fits the
forests, the rest calibrates them (Platt per member, then the stacker). A random split
would leak the neighbouring, near-identical rows of one event into both halves.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from models.ensemble import COMBINATIONS, MEMBERS, ModelBundle, Platt, logit
from models.evaluation import Event, EventReport, evaluate
from models.pipeline import PipelineConfig, SymbolSnapshot
from models.ticks import Tick

logger = logging.getLogger(__name__)

#: Labelled scenarios that are not positives for the classifier: a regime shift is a new
#: normal, to be absorbed, not an event to flag for its whole length.
NOT_POSITIVE = frozenset({"regime_shift"})


@dataclass(frozen=True, slots=True)
class Window:
    scenario: str
    symbol: str
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class Dataset:
    """One row per scored tick.

    ``y`` is 1 for a row in the *onset* of a positive window (its first ``onset_s``), 0 for a
    row outside every window. ``train`` is False for rows the models must not learn from:
    the rest of an event window (the dump after a pump looks like ordinary selling; labelling
    it anomalous would teach the forests that ordinary rows are anomalies) and regime shifts.
    All rows are kept so that alerting can be replayed for the threshold choice.
    """

    x: np.ndarray  # model input rows
    stat: np.ndarray  # statistical layer score per row
    y: np.ndarray
    t: np.ndarray  # event time (ms)
    symbol: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    train: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    windows: tuple[Window, ...] = ()
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)


class _WindowIndex:
    def __init__(self, windows: Iterable[Window]) -> None:
        self.by_symbol: dict[str, list[Window]] = {}
        for w in sorted(windows, key=lambda w: w.start_ms):
            self.by_symbol.setdefault(w.symbol, []).append(w)
        self.starts = {s: [w.start_ms for w in ws] for s, ws in self.by_symbol.items()}

    def lookup(self, symbol: str, t: int) -> Window | None:
        ws = self.by_symbol.get(symbol)
        if not ws:
            return None
        i = bisect.bisect_right(self.starts[symbol], t) - 1
        return ws[i] if i >= 0 and ws[i].start_ms <= t <= ws[i].end_ms else None


def build_dataset(
    ticks: Iterable[Tick],
    windows: Sequence[Window],
    config: PipelineConfig | None = None,
    progress: Callable[[int], None] | None = None,
    onset_s: float = 120.0,
) -> Dataset:
    """Feature rows and labels for every scored tick (see :class:`Dataset`)."""
    config = config or PipelineConfig()
    index = _WindowIndex(windows)
    snaps: dict[str, SymbolSnapshot] = {}
    rows: list[list[float]] = []
    stat_scores: list[float] = []
    labels: list[int] = []
    times: list[int] = []
    symbols: list[str] = []
    train: list[bool] = []
    spans: dict[str, tuple[int, int]] = {}
    onset_ms = onset_s * 1000.0
    for n, tick in enumerate(ticks, 1):
        snap = snaps.get(tick.symbol)
        if snap is None:
            snap = snaps[tick.symbol] = SymbolSnapshot.new(tick.symbol, config)
            spans[tick.symbol] = (tick.timestamp, tick.timestamp)
        spans[tick.symbol] = (spans[tick.symbol][0], max(spans[tick.symbol][1], tick.timestamp))
        feats = snap.features.update(tick)
        res = snap.stat.score_one_raw(feats)
        snap.stat.learn_one(feats, res)
        if progress is not None and n % 10_000 == 0:
            progress(10_000)
        if not res.active:
            continue
        w = index.lookup(tick.symbol, tick.timestamp)
        rows.append(res.model_input(feats))
        stat_scores.append(res.score)
        times.append(tick.timestamp)
        symbols.append(tick.symbol)
        if w is None:
            labels.append(0)
            train.append(True)
        else:
            labels.append(1)
            train.append(w.scenario not in NOT_POSITIVE and tick.timestamp - w.start_ms <= onset_ms)
    return Dataset(
        np.asarray(rows, dtype=np.float64).reshape(-1, len(rows[0]) if rows else 0),
        np.asarray(stat_scores),
        np.asarray(labels, dtype=np.int8),
        np.asarray(times, dtype=np.int64),
        np.asarray(symbols, dtype=object),
        np.asarray(train, dtype=bool),
        tuple(windows),
        spans,
    )


@dataclass(frozen=True, slots=True)
class TrainConfig:
    fit_fraction: float = 0.6
    n_estimators: int = 100
    max_normal_rows: int = 30_000  # IsolationForest subsamples 256 rows per tree anyway
    max_positive_rows: int = 20_000
    max_negatives_per_positive: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.1 <= self.fit_fraction <= 0.9:
            raise ValueError(f"fit_fraction must be in [0.1, 0.9], got {self.fit_fraction}")


def _platt(raw: np.ndarray, y: np.ndarray) -> Platt:
    lr = LogisticRegression(C=100.0).fit(raw.reshape(-1, 1), y)
    return Platt(float(lr.coef_[0, 0]), float(lr.intercept_[0]))


def replay_alerts(
    symbols: np.ndarray, times: np.ndarray, scores: np.ndarray, threshold: float, cooldown_s: float
) -> list[tuple[str, int]]:
    """The alerts the worker would raise from these per-row scores (rows in time order per symbol)."""
    last: dict[str, int] = {}
    out: list[tuple[str, int]] = []
    cooldown_ms = cooldown_s * 1000.0
    for i in np.flatnonzero(scores >= threshold):
        sym, t = symbols[i], int(times[i])
        prev = last.get(sym)
        if prev is None or t - prev >= cooldown_ms:
            last[sym] = t
            out.append((sym, t))
    return out


def choose_threshold(
    data: Dataset, mask: np.ndarray, scores: np.ndarray, cooldown_s: float
) -> tuple[float, EventReport]:
    """The alert threshold with the best event-level F1 on the masked rows (ties: fewer false alarms).

    Chosen by evaluation, as the alert decision is made per event, not per row.
    """
    t_lo, t_hi = int(data.t[mask].min()), int(data.t[mask].max())
    events = [Event(w.symbol, w.start_ms, w.end_ms, w.scenario) for w in data.windows
              if w.scenario not in NOT_POSITIVE and t_lo <= w.start_ms <= t_hi]
    spans = {s: (max(a, t_lo), min(b, t_hi)) for s, (a, b) in data.spans.items()}
    order = np.lexsort((data.t[mask],))
    syms, times, sc = data.symbol[mask][order], data.t[mask][order], scores[order]
    # Calibrated scores crowd near 0 and 1: search on the logit scale, where they spread out.
    candidates = 1.0 / (1.0 + np.exp(-np.linspace(-4.0, 16.0, 161)))
    best: tuple[float, float, float, EventReport] | None = None
    for thr in candidates:
        report = evaluate(replay_alerts(syms, times, sc, float(thr), cooldown_s), events, spans)
        key = (report.f1, -report.false_alarms_per_symbol_day)
        if best is None or key > (best[0], best[1]):
            best = (report.f1, -report.false_alarms_per_symbol_day, float(thr), report)
    if best is None:
        raise ValueError("no usable threshold: all scores are zero")
    return best[2], best[3]


def fit_bundle(data: Dataset, config: TrainConfig | None = None, cooldown_s: float = 300.0) -> ModelBundle:
    """Fit the forests, calibrate each member and the stacker, choose the alert threshold.

    The first ``fit_fraction`` of the time span fits the forests; the rest calibrates the
    members and the stacker and picks the threshold (so both see rows the forests did not).
    """
    config = config or TrainConfig()
    rng = np.random.default_rng(config.seed)
    cut = np.quantile(data.t, config.fit_fraction)
    train = data.train if len(data.train) == len(data.y) else np.ones(len(data.y), dtype=bool)
    fit, cal = (data.t <= cut) & train, (data.t > cut) & train
    for name, mask in (("fit", fit), ("calibration", cal)):
        if data.y[mask].sum() < 5 or (data.y[mask] == 0).sum() < 50:
            raise ValueError(f"the {name} split needs >= 5 positive and >= 50 negative rows")

    x_fit, y_fit = data.x[fit], data.y[fit]
    normal = np.flatnonzero(y_fit == 0)
    positive = np.flatnonzero(y_fit == 1)
    iforest_rows = rng.choice(normal, size=min(len(normal), config.max_normal_rows), replace=False)
    iforest = IsolationForest(n_estimators=config.n_estimators, random_state=config.seed)
    iforest.fit(x_fit[np.sort(iforest_rows)])

    positive = rng.choice(positive, size=min(len(positive), config.max_positive_rows), replace=False)
    negatives = rng.choice(
        normal, size=min(len(normal), config.max_negatives_per_positive * max(len(positive), 1)), replace=False
    )
    rf_rows = np.sort(np.concatenate([positive, negatives]))
    rforest = RandomForestClassifier(
        n_estimators=config.n_estimators, min_samples_leaf=5, max_depth=16, class_weight="balanced_subsample",
        random_state=config.seed, n_jobs=1,
    )
    rforest.fit(x_fit[rf_rows], y_fit[rf_rows])

    bundle = ModelBundle("unsaved", iforest, rforest, {m: Platt() for m in MEMBERS}, (1.0, 0.0, 0.0), 0.0)
    x_cal, y_cal = data.x[cal], data.y[cal]
    raw = bundle.member_raw(x_cal, data.stat[cal])
    bundle.calibration = {m: _platt(raw[:, i], y_cal) for i, m in enumerate(MEMBERS)}
    probs = bundle.member_probs(raw)
    stacker = LogisticRegression(C=10.0).fit(logit(probs), y_cal)
    bundle.stack_weights = tuple(float(w) for w in stacker.coef_[0])
    bundle.stack_bias = float(stacker.intercept_[0])

    # Threshold and event-level figures on every row of the calibration period (event windows
    # included), each member alone at its own best threshold beside the ensemble.
    period = data.t > cut
    all_probs = bundle.member_probs(bundle.member_raw(data.x[period], data.stat[period]))
    events: dict[str, dict[str, Any]] = {}
    best: tuple[tuple[float, float], str, float] | None = None
    for rule in COMBINATIONS:
        bundle.combination = rule
        thr, rep = choose_threshold(data, period, bundle.combine(all_probs), cooldown_s)
        events[rule] = {"threshold": thr, **rep.summary()}
        key = (rep.f1, -rep.false_alarms_per_symbol_day)
        if best is None or key > best[0]:
            best = (key, rule, thr)
    assert best is not None
    _, bundle.combination, bundle.threshold = best
    events["chosen"] = {"combination": bundle.combination, **events[bundle.combination]}

    metrics: dict[str, float | int] = {
        "rows_fit": int(fit.sum()), "rows_calibration": int(cal.sum()),
        "positives_fit": int(y_fit.sum()), "positives_calibration": int(y_cal.sum()),
    }
    for i, m in enumerate(MEMBERS):
        metrics[f"auc_{m}"] = round(float(roc_auc_score(y_cal, probs[:, i])), 4)
        metrics[f"ap_{m}"] = round(float(average_precision_score(y_cal, probs[:, i])), 4)
    cal_ens = bundle.combine(probs)  # with the chosen combination
    metrics["auc_ensemble"] = round(float(roc_auc_score(y_cal, cal_ens)), 4)
    metrics["ap_ensemble"] = round(float(average_precision_score(y_cal, cal_ens)), 4)
    bundle.info = {"metrics": metrics, "events_calibration": events, "seed": config.seed,
                   "n_estimators": config.n_estimators}
    logger.info("trained ensemble: %s", events["chosen"])
    return bundle
