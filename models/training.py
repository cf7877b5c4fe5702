"""Training: labelled ticks -> fitted forests, member calibration, stacker and alert threshold.

The data set is built by running ticks through the same feature engine and statistical
layer the worker uses, so the forests see exactly what they will score live. Rows of a
symbol still in its grace period are left out (the worker does not score them either).

Out-of-fold, by symbol. The symbols are dealt into two folds (stratified by their number of
rows, so both folds hold liquid and illiquid ones); the forests of one fold are fitted on the
other fold's rows, so every row gets a score from forests that never saw its symbol. The
member calibration, the stacker, the combination rule and the alert threshold are all chosen
on those out-of-fold scores, over *every* labelled event and the whole time span, instead of
the few events of a held-out time slice. The shipped random forest is the union of the two
fold forests (its vote share is the average of theirs); the isolation forest, fitted on
normal rows only, is refitted on all of them. A random row split would leak the
neighbouring, near-identical rows of one event into both halves; a symbol split cannot.

The alert threshold is chosen by event-level evaluation under a false-alarm budget: the best
event F1 among thresholds whose false alarms per symbol-day do not exceed the budget (by
default half the statistical layer's own rate at its default threshold on the same rows, so the
ensemble is never allowed to buy recall with more false alarms than the layer it must beat; half,
because the best of many candidate thresholds on the training rows alarms more on new data; and
never above the product's target of 0.1 false alarms per symbol-day, ``false_alarm_target``).
The combination rule is the stacker unless another rule's threshold choice holds up clearly better
across the symbol folds (chosen on one fold, judged on the other: :func:`cross_validated_report`,
:func:`choose_rule`).
"""

from __future__ import annotations

import bisect
import logging
import math
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from models.ensemble import COMBINATIONS, MEMBERS, ModelBundle, Platt, sigmoid, stack_inputs, stat_logit
from models.evaluation import (
    Event,
    EventReport,
    cooldown_alert_times,
    evaluate,
    paired_f1_difference,
    poisson_upper,
    sweep_and_pick,
    symbol_counts,
)
from models.forests import compile_forest
from models.pipeline import PipelineConfig, SymbolSnapshot
from models.ticks import Tick

logger = logging.getLogger(__name__)

#: Labelled scenarios that are not positives for the classifier: a regime shift is a new
#: normal, to be absorbed, not an event to flag for its whole length.
NOT_POSITIVE = frozenset({"regime_shift"})
#: Seconds from a window's start whose rows are positives, per scenario (others: ``onset_s``).
#: ``None`` = the whole window: a frozen price or a wash-trading burst is the anomaly for as
#: long as it lasts, and a stale feed only becomes visible after many unchanged trades,
#: whereas after a pump's rise or a crash's fall the dump or recovery looks like ordinary trading.
ONSET_BY_SCENARIO: Mapping[str, float | None] = {"stale_price": None, "volume_spike_flat": None}
#: Statistical-layer threshold the default false-alarm budget is measured at (the worker's
#: threshold without a trained model).
STAT_ONLY_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Window:
    scenario: str
    symbol: str
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class Dataset:
    """One row per scored tick.

    ``y`` is 1 for a row inside a labelled window, 0 for a row outside every window. ``train``
    is False for rows the models must not learn from: the part of a window after its onset (the
    dump after a pump looks like ordinary selling; labelling it anomalous would teach the
    forests that ordinary rows are anomalies, see :data:`ONSET_BY_SCENARIO`) and regime
    shifts. ``event`` is the index in ``windows`` of a row's window (-1 outside every window).
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
    event: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class _WindowIndex:
    def __init__(self, windows: Iterable[Window]) -> None:
        self.by_symbol: dict[str, list[tuple[int, Window]]] = {}
        for i, w in sorted(enumerate(windows), key=lambda iw: iw[1].start_ms):
            self.by_symbol.setdefault(w.symbol, []).append((i, w))
        self.starts = {s: [w.start_ms for _, w in ws] for s, ws in self.by_symbol.items()}

    def lookup(self, symbol: str, t: int) -> int:
        """Index of the window holding (symbol, t), -1 if none."""
        ws = self.by_symbol.get(symbol)
        if not ws:
            return -1
        i = bisect.bisect_right(self.starts[symbol], t) - 1
        return ws[i][0] if i >= 0 and ws[i][1].start_ms <= t <= ws[i][1].end_ms else -1


def label_rows(
    event: np.ndarray, t: np.ndarray, windows: Sequence[Window], onset_s: float = 120.0
) -> tuple[np.ndarray, np.ndarray]:
    """(y, train) of rows from their window index and time (see :class:`Dataset`)."""
    y = (event >= 0).astype(np.int8)
    train = event < 0
    for i, w in enumerate(windows):
        if w.scenario in NOT_POSITIVE:
            continue
        onset = ONSET_BY_SCENARIO.get(w.scenario, onset_s)
        rows = event == i
        train |= rows if onset is None else rows & (t - w.start_ms <= onset * 1000.0)
    return y, train


#: Rows per numpy block while a data set is built (~1 MB at the 15 model inputs).
_BLOCK_ROWS = 8192


def build_dataset(
    ticks: Iterable[Tick],
    windows: Sequence[Window],
    config: PipelineConfig | None = None,
    progress: Callable[[int], None] | None = None,
    onset_s: float = 120.0,
) -> Dataset:
    """Feature rows and labels for every scored tick (see :class:`Dataset`)."""
    config = config or PipelineConfig()
    windows = tuple(windows)
    index = _WindowIndex(windows)
    snaps: dict[str, SymbolSnapshot] = {}
    # Rows go into numpy blocks and the per-row numbers into typed arrays as they come: a list of
    # Python float lists cost ~0.8 KB a row, and 72 quiet symbol-days (~15 M rows) ran out of 24 GB.
    blocks: list[np.ndarray] = []
    rows: list[list[float]] = []
    stat_scores = array("d")
    times = array("q")
    symbols: list[str] = []
    events = array("q")
    spans: dict[str, tuple[int, int]] = {}
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
        rows.append(res.model_input(feats))
        if len(rows) == _BLOCK_ROWS:
            blocks.append(np.asarray(rows, dtype=np.float64))
            rows.clear()
        stat_scores.append(res.score)
        times.append(tick.timestamp)
        symbols.append(tick.symbol)
        events.append(index.lookup(tick.symbol, tick.timestamp))
    if rows:
        blocks.append(np.asarray(rows, dtype=np.float64))
    t = np.frombuffer(times, dtype=np.int64).copy()
    event = np.frombuffer(events, dtype=np.int64).copy()
    y, train = label_rows(event, t, windows, onset_s)
    return Dataset(
        np.vstack(blocks) if blocks else np.zeros((0, 0)),
        np.frombuffer(stat_scores, dtype=np.float64).copy(),
        y,
        t,
        np.asarray(symbols, dtype=object),
        train,
        windows,
        spans,
        event,
    )


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training settings.

    ``max_false_alarms_per_symbol_day``: the budget of the threshold choice; ``None`` =
    ``false_alarm_share`` of the statistical layer's own rate at its default threshold on the
    same rows. The share is below 1 because the threshold is the best of many tried on these
    rows, so its false-alarm rate on new data is biased upwards (the winner's curse): half the
    reference rate on the training rows held about the reference rate out of sample.
    ``false_alarm_confidence``: with quiet rows, a threshold is within the budget only if the Poisson
    upper bound of its false-alarm rate at this level is (``None``: the observed rate). The threshold is
    the lowest of many whose observed rate is just under the budget, so its rate on new data is biased
    upwards; the bound asks for a margin that shrinks as the quiet symbol-days grow.
    ``false_alarm_target``: the budget never exceeds it (the product's target, 0.1 false alarms
    per symbol-day; ``None`` = no cap). The statistical layer alarms often enough on the training
    rows that half its rate was 0.65 a symbol-day, and the threshold chosen within that ran at
    0.13-0.21 on fresh seeds, above the target, with no recall gained for it.
    ``max_rows_per_event``: rows of one event the random forest sees (each event weighs the
    same in the fit however long it is; events, not rows, are what detection is judged on).
    """

    n_estimators: int = 100
    max_normal_rows: int = 30_000  # IsolationForest subsamples 256 rows per tree anyway
    max_negative_rows: int = 60_000
    max_rows_per_event: int = 400
    max_calibration_negatives: int = 300_000
    max_false_alarms_per_symbol_day: float | None = None
    false_alarm_share: float = 0.5
    false_alarm_target: float | None = 0.1
    false_alarm_confidence: float | None = None
    folds: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.false_alarm_confidence is not None and not 0.0 < self.false_alarm_confidence < 1.0:
            raise ValueError(f"false_alarm_confidence must be in (0, 1), got {self.false_alarm_confidence}")
        if self.max_false_alarms_per_symbol_day is not None and self.max_false_alarms_per_symbol_day < 0:
            raise ValueError("max_false_alarms_per_symbol_day must be >= 0")
        if self.false_alarm_target is not None and self.false_alarm_target < 0:
            raise ValueError(f"false_alarm_target must be >= 0, got {self.false_alarm_target}")
        if self.false_alarm_share <= 0:
            raise ValueError(f"false_alarm_share must be > 0, got {self.false_alarm_share}")


def _platt(raw: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Platt:
    lr = LogisticRegression(C=100.0).fit(raw.reshape(-1, 1), y, sample_weight=weight)
    return Platt(float(lr.coef_[0, 0]), float(lr.intercept_[0]))


class _Replayer:
    """Alert replays of fixed rows at many thresholds, jumping from alert to alert by binary search."""

    def __init__(self, symbols: np.ndarray, times: np.ndarray, cooldown_s: float) -> None:
        order = np.lexsort((times, symbols.astype(str)))
        self.order = order
        syms = symbols[order]
        cuts = np.flatnonzero(syms[1:] != syms[:-1]) + 1
        self.groups = [(str(syms[a]), a, b) for a, b in zip([0, *cuts], [*cuts, len(syms)], strict=True)]
        self.times = times[order]
        self.cooldown_ms = cooldown_s * 1000.0

    def alerts(self, scores: np.ndarray, threshold: float) -> list[tuple[str, int]]:
        sc = scores[self.order]
        out: list[tuple[str, int]] = []
        for sym, a, b in self.groups:
            out.extend((sym, t) for t in cooldown_alert_times(self.times[a:b][sc[a:b] >= threshold], self.cooldown_ms))
        return out


def _events_and_spans(data: Dataset, mask: np.ndarray) -> tuple[list[Event], dict[str, tuple[int, int]]]:
    t_lo, t_hi = int(data.t[mask].min()), int(data.t[mask].max())
    syms = set(data.symbol[mask].tolist())
    events = [Event(w.symbol, w.start_ms, w.end_ms, w.scenario) for w in data.windows
              if w.scenario not in NOT_POSITIVE and t_lo <= w.start_ms <= t_hi and w.symbol in syms]
    spans = {s: (max(a, t_lo), min(b, t_hi)) for s, (a, b) in data.spans.items() if s in syms}
    return events, spans


class QuietAlarms:
    """False alarms of one score on quiet rows (a data set without events: every alert episode is one).

    The threshold choice adds them to the training rows' count. Four training symbol-days hold too few
    false alarms to tell a rate of 0.1 a symbol-day from 0 (the threshold chosen with none there ran
    at 0.17-0.21 on fresh seeds); quiet symbol-days are cheap to add, as they need no forest refit.
    """

    def __init__(self, quiet: Dataset, scores: np.ndarray, cooldown_s: float, floor: float = 0.0,
                 confidence: float | None = None) -> None:
        # Rows under every threshold that will be asked about never alert: only the rest are replayed
        # (exact, and most quiet rows score far below any threshold).
        keep = scores >= floor
        self.replayer = _Replayer(quiet.symbol[keep], quiet.t[keep], cooldown_s)
        self.scores = scores[keep]
        self.spans = quiet.spans
        self.symbol_days = evaluate([], [], quiet.spans).symbol_days
        self.confidence = confidence
        self._counts: dict[float, int] = {}

    def __call__(self, threshold: float) -> int:
        count = self._counts.get(threshold)
        if count is None:  # the threshold choice and the training report ask for the same thresholds
            count = self._counts[threshold] = evaluate(
                self.replayer.alerts(self.scores, threshold), [], self.spans).false_alarms
        return count

    def rate_with(self, report: EventReport, threshold: float) -> float:
        """False alarms per symbol-day of ``report``'s rows and these quiet rows together, at ``threshold``:
        the observed rate, or with ``confidence`` its one-sided Poisson upper bound at that level."""
        count: float = report.false_alarms + self(threshold)
        if self.confidence is not None:
            count = poisson_upper(int(count), self.confidence)
        return count / max(report.symbol_days + self.symbol_days, 1e-9)


#: Candidate thresholds: calibrated scores crowd near 0 and 1, so search on the logit scale.
CANDIDATES = 1.0 / (1.0 + np.exp(-np.linspace(-4.0, 16.0, 161)))


def choose_threshold(
    data: Dataset, mask: np.ndarray, scores: np.ndarray, cooldown_s: float,
    max_false_alarms_per_symbol_day: float = math.inf, candidates: np.ndarray = CANDIDATES,
    replayer: _Replayer | None = None, quiet: QuietAlarms | None = None,
) -> tuple[float, EventReport]:
    """The alert threshold on the masked rows: :func:`models.evaluation.pick_threshold` over the candidates.

    Chosen by evaluation, as the alert decision is made per event, not per row. ``scores`` holds the
    masked rows' scores. Candidates are tried from the highest down; the search stops once a whole logit
    unit of them (8) is over the budget (false alarms only grow as the threshold falls, up to episodes
    merging). With ``quiet``, the budget applies to the false alarms of the masked rows and the quiet rows
    together, per symbol-day of both; the report stays that of the masked rows.
    """
    events, spans = _events_and_spans(data, mask)
    replayer = replayer or _Replayer(data.symbol[mask], data.t[mask], cooldown_s)

    def figures(thr: float) -> tuple[float, float, EventReport]:
        report = evaluate(replayer.alerts(scores, thr), events, spans)
        fa = report.false_alarms_per_symbol_day if quiet is None else quiet.rate_with(report, thr)
        return report.f1, fa, report

    return sweep_and_pick(candidates.tolist(), figures, max_false_alarms_per_symbol_day, patience=8)


def cross_validated_alerts(data: Dataset, scores: np.ndarray, fold: np.ndarray, cooldown_s: float,
                           max_false_alarms_per_symbol_day: float = math.inf) -> list[tuple[str, int]]:
    """The alerts of :func:`cross_validated_report`: each fold at the threshold the other folds chose."""
    alerts: list[tuple[str, int]] = []
    for k in np.unique(fold):
        held_out = fold == k
        thr, _ = choose_threshold(data, ~held_out, scores[~held_out], cooldown_s, max_false_alarms_per_symbol_day)
        alerts += _Replayer(data.symbol[held_out], data.t[held_out], cooldown_s).alerts(scores[held_out], thr)
    return alerts


def cross_validated_report(data: Dataset, scores: np.ndarray, fold: np.ndarray, cooldown_s: float,
                           max_false_alarms_per_symbol_day: float = math.inf) -> EventReport:
    """Event figures of a score when its threshold is chosen on the other folds' symbols.

    Each fold's alerts come from the threshold :func:`choose_threshold` picks on the rows of the
    other folds; the alerts of all folds are then scored together against every event. This is
    what choosing a threshold on these rows is worth on symbols it did not see; the in-sample
    best F1 is not: with a few dozen events several rules reach F1 1.0 there, and the one picked
    among such ties did no better than another on new data (docs/detection-history.md, seeds 601-604).
    """
    alerts = cross_validated_alerts(data, scores, fold, cooldown_s, max_false_alarms_per_symbol_day)
    events, spans = _events_and_spans(data, np.ones(len(scores), dtype=bool))
    return evaluate(alerts, events, spans)


def rule_key(cv: EventReport, in_sample: EventReport, budget: float,
             in_sample_false_alarms: float | None = None) -> tuple[float, ...]:
    """Order of combination rules: cross-validated F1, then its false alarms, then the in-sample figures.

    ``in_sample_false_alarms`` (per symbol-day) replaces the report's when the threshold's budget also
    counted quiet rows: the rule is then judged on the same false alarms its threshold was.
    """
    fa = in_sample.false_alarms_per_symbol_day if in_sample_false_alarms is None else in_sample_false_alarms
    within = fa <= budget + 1e-9
    return (cv.f1, -cv.false_alarms_per_symbol_day, in_sample.f1 if within else -1.0, -fa)


#: The combination kept unless cross-validation shows another rule clearly better: the stacker
#: weighs each member by what it adds, where the mean gives the weakest member a third of the say.
DEFAULT_RULE = "stacked"


def choose_rule(best: str, counts: Mapping[str, np.ndarray], seed: int = 0) -> tuple[str, dict[str, Any] | None]:
    """``best`` if its cross-validated F1 beats :data:`DEFAULT_RULE`'s with a paired 95 % interval above 0.

    With a few dozen training events, rules a detection or two apart trade places from one seed to the
    next (docs/detection-history.md: the best cross-validated rule, taken outright, was the weakest of four
    in two eight-seed evaluations), so a rule replaces the default only on evidence beyond that noise.
    ``counts``: per-symbol counts of each rule's cross-validated alerts (:func:`~models.evaluation.symbol_counts`).
    """
    if best == DEFAULT_RULE:
        return best, None
    diff = paired_f1_difference(counts[best], counts[DEFAULT_RULE], seed=seed)
    lower = diff["ci95"]
    assert isinstance(lower, list)
    return (best if lower[0] > 0 else DEFAULT_RULE), diff


def _folds(data: Dataset, k: int) -> np.ndarray:
    """Fold of each row: symbols dealt round-robin by decreasing row count (time halves for one symbol)."""
    names, inverse, counts = np.unique(data.symbol.astype(str), return_inverse=True, return_counts=True)
    if len(names) < k:
        return np.minimum((np.argsort(np.argsort(data.t, kind="stable")) * k) // max(len(data.t), 1), k - 1)
    fold_of = np.empty(len(names), dtype=np.int64)
    fold_of[np.lexsort((names, -counts))] = np.arange(len(names)) % k
    return fold_of[inverse]


def _fit_rows(data: Dataset, rows: np.ndarray, config: TrainConfig, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and sample weights for the random forest: each event weighs the same,
    the negatives together weigh as much as all events."""
    event = data.event if len(data.event) == len(data.y) else np.where(data.y == 1, 0, -1)
    pos = rows[data.y[rows] == 1]
    neg = rows[data.y[rows] == 0]
    neg = np.sort(rng.choice(neg, size=min(len(neg), config.max_negative_rows), replace=False))
    picked: list[np.ndarray] = []
    for e in np.unique(event[pos]):
        r = pos[event[pos] == e]
        picked.append(np.sort(rng.choice(r, size=min(len(r), config.max_rows_per_event), replace=False)))
    pos_rows = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    w_pos = np.concatenate([np.full(len(p), 1.0 / len(p)) for p in picked]) if picked else np.zeros(0)
    n_events = max(len(picked), 1)
    w_neg = np.full(len(neg), n_events / max(len(neg), 1))
    idx = np.concatenate([pos_rows, neg])
    w = np.concatenate([w_pos, w_neg])
    return idx, w * (len(idx) / w.sum())  # mean weight 1 keeps min_samples_leaf meaningful


def _rforest(n: int, seed: int) -> RandomForestClassifier:
    # All cores to fit (trees are independent; the result does not depend on n_jobs).
    return RandomForestClassifier(n_estimators=n, min_samples_leaf=5, max_depth=16, random_state=seed, n_jobs=-1)


def _iforest(data: Dataset, rows: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> IsolationForest:
    normal = rows[data.y[rows] == 0]
    pick = np.sort(rng.choice(normal, size=min(len(normal), config.max_normal_rows), replace=False))
    return IsolationForest(n_estimators=config.n_estimators, random_state=config.seed, n_jobs=-1).fit(data.x[pick])


def _merge(forests: Sequence[RandomForestClassifier]) -> RandomForestClassifier:
    """One forest whose vote share is the mean of the given forests' (all trained on classes 0 and 1)."""
    merged = forests[0]
    merged.estimators_ = [t for f in forests for t in f.estimators_]
    merged.n_estimators = len(merged.estimators_)
    return merged


def fit_bundle(data: Dataset, config: TrainConfig | None = None, cooldown_s: float = 300.0,
               quiet: Dataset | None = None) -> ModelBundle:
    """Fit the forests out of fold, calibrate each member and the stacker, choose rule and threshold.

    ``quiet``: rows of symbols without events (:class:`QuietAlarms`), scored by the shipped forests
    (which never saw them); their false alarms count in every threshold choice.
    """
    config = config or TrainConfig()
    rng = np.random.default_rng(config.seed)
    train = data.train if len(data.train) == len(data.y) else np.ones(len(data.y), dtype=bool)
    fold = _folds(data, config.folds)
    fit_masks = [train & (fold != k) for k in range(config.folds)]
    for k, mask in enumerate(fit_masks):
        if data.y[mask].sum() < 5 or (data.y[mask] == 0).sum() < 50:
            raise ValueError(f"fold {k}: the fit rows need >= 5 positive and >= 50 negative rows")

    # Out-of-fold member outputs for every row (window rows included, for the event replay).
    raw = np.zeros((len(data.y), len(MEMBERS)))
    raw[:, 0] = stat_logit(data.stat)
    trees = max(1, -(-config.n_estimators // config.folds))
    forests: list[RandomForestClassifier] = []
    rows_fit = 0
    for k, mask in enumerate(fit_masks):
        rows = np.flatnonzero(mask)
        idx, w = _fit_rows(data, rows, config, rng)
        rows_fit += len(idx)
        rf = _rforest(trees, config.seed + k).fit(data.x[idx], data.y[idx], sample_weight=w)
        forests.append(rf)
        out = fold == k
        # One thread to predict: with several, scikit-learn adds the trees' votes in the order the
        # threads finish, so the last bits (and a threshold tie) changed from run to run under load.
        raw[out, 2] = rf.set_params(n_jobs=1).predict_proba(data.x[out])[:, 1]
        raw[out, 1] = -_iforest(data, rows, config, rng).score_samples(data.x[out])
    # The shipped forests are compiled to node arrays: the worker scores them with numpy alone.
    iforest = compile_forest(_iforest(data, np.flatnonzero(train), config, rng))
    bundle = ModelBundle("unsaved", iforest, compile_forest(_merge(forests)), {m: Platt() for m in MEMBERS},
                         (1.0, 0.0, 0.0), 0.0)

    # Calibration rows: every positive training row and a random share of the negatives (weighted back).
    cal = np.flatnonzero(train)
    neg = cal[data.y[cal] == 0]
    keep = min(len(neg), config.max_calibration_negatives)
    cal = np.sort(np.concatenate([cal[data.y[cal] == 1], rng.choice(neg, size=keep, replace=False)]))
    y_cal = data.y[cal]
    w_cal = np.where(y_cal == 1, 1.0, len(neg) / max(keep, 1))
    bundle.calibration = {m: _platt(raw[cal, i], y_cal, w_cal) for i, m in enumerate(MEMBERS)}
    log_odds_all = bundle.member_log_odds(raw)
    probs = sigmoid(log_odds_all[cal])
    stacker = LogisticRegression(C=10.0).fit(stack_inputs(log_odds_all[cal]), y_cal, sample_weight=w_cal)
    bundle.stack_weights = tuple(float(w) for w in stacker.coef_[0])
    bundle.stack_bias = float(stacker.intercept_[0])

    # The false-alarm budget, then the threshold of each rule on every row (event windows
    # included), each member alone at its own best threshold beside the combinations.
    everything = np.ones(len(data.y), dtype=bool)
    replayer = _Replayer(data.symbol, data.t, cooldown_s)
    budget = config.max_false_alarms_per_symbol_day
    if budget is None:
        reference = choose_threshold(data, everything, data.stat, cooldown_s,
                                     candidates=np.asarray([STAT_ONLY_THRESHOLD]), replayer=replayer)[1]
        budget = config.false_alarm_share * reference.false_alarms_per_symbol_day
        if config.false_alarm_target is not None:
            budget = min(budget, config.false_alarm_target)
    events: dict[str, dict[str, Any]] = {}
    keys: dict[str, tuple[float, ...]] = {}
    counts: dict[str, np.ndarray] = {}
    event_list, spans = _events_and_spans(data, everything)
    symbols = sorted(spans)
    quiet_log_odds = None if quiet is None else bundle.member_log_odds(bundle.member_raw(quiet.x, quiet.stat))
    for rule in COMBINATIONS:
        bundle.combination = rule
        scores = bundle.combine(log_odds_all)
        alarms = None if quiet is None or quiet_log_odds is None else QuietAlarms(
            quiet, bundle.combine(quiet_log_odds), cooldown_s, floor=float(CANDIDATES.min()),
            confidence=config.false_alarm_confidence)
        thr, rep = choose_threshold(data, everything, scores, cooldown_s, budget, replayer=replayer, quiet=alarms)
        rep_quiet = {} if alarms is None else {"quiet_false_alarms": alarms(thr),
                                               "quiet_symbol_days": round(alarms.symbol_days, 3)}
        alerts = cross_validated_alerts(data, scores, fold, cooldown_s, budget)
        cv = evaluate(alerts, event_list, spans)
        counts[rule] = symbol_counts(cv, alerts, symbols)
        events[rule] = {"threshold": thr, **rep.summary(), **rep_quiet, "cross_validated": cv.summary()}
        keys[rule] = rule_key(cv, rep, budget, None if alarms is None else alarms.rate_with(rep, thr))
    best = max(COMBINATIONS, key=lambda r: keys[r])
    chosen, versus = choose_rule(best, counts, config.seed)
    bundle.combination, bundle.threshold = chosen, events[chosen]["threshold"]
    events["chosen"] = {"combination": chosen, **events[chosen], "best_cross_validated": best,
                        "best_minus_default": versus}

    metrics: dict[str, float | int] = {
        "rows_fit": rows_fit, "rows_calibration": len(cal),
        "positives_fit": int(data.y[train].sum()), "positives_calibration": int(y_cal.sum()),
        "events": len(_events_and_spans(data, everything)[0]), "folds": config.folds,
        "false_alarm_budget_per_symbol_day": round(float(budget), 4),
    }
    for i, m in enumerate(MEMBERS):
        metrics[f"auc_{m}"] = round(float(roc_auc_score(y_cal, probs[:, i])), 4)
        metrics[f"ap_{m}"] = round(float(average_precision_score(y_cal, probs[:, i])), 4)
    cal_ens = bundle.combine(log_odds_all[cal])  # with the chosen combination
    metrics["auc_ensemble"] = round(float(roc_auc_score(y_cal, cal_ens)), 4)
    metrics["ap_ensemble"] = round(float(average_precision_score(y_cal, cal_ens)), 4)
    bundle.info = {"metrics": metrics, "events_calibration": events, "seed": config.seed,
                   "n_estimators": bundle.rforest.n_estimators}
    logger.info("trained ensemble: %s", events["chosen"])
    return bundle
