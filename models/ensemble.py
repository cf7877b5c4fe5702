"""The ensemble: statistical layer + IsolationForest + RandomForest, one calibrated score.

Members speak different languages: the statistical layer gives a [0, 1] rule score,
scikit-learn's ``IsolationForest.score_samples`` is *lower = more abnormal*, and
``RandomForestClassifier.predict_proba`` is a vote share. Each member's raw output is put
on the log-odds scale by its own Platt calibration (a 1-D logistic regression fitted on
out-of-fold scores of the labelled training data, from forests that never saw the row's
symbol; see :mod:`models.training`), and a stacker (a logistic regression over the members'
calibrated log-odds and their median, :func:`stack_inputs`) combines them into the ensemble
probability.

The stacker reads the calibrated log-odds themselves, bounded at :data:`LOGIT_BOUND`. Models saved
before the bound existed read them through probabilities clipped at 1e-6 (log-odds +/- 13.8): there,
every tick on which a statistical rule fired clearly (its raw log-odds above ~2.3) looked the same to
the stacker, 4.5 % of the ticks of a synthetic day, so the stacker could not tell a rule barely
firing from one far past its threshold.

All calibration parameters are plain numbers (JSON in the artifact manifest); the forests are
flat node arrays (:mod:`models.forests`), loaded after their hash is checked.

Models always score a whole micro-batch (one vectorised call per forest per batch, never per row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from models.forests import FlatForest

try:  # found only on a fresh compiled build's path (models._native), as the forest walk
    from models import _rowpack
except ImportError:  # pragma: no cover - exercised by the interpreted-core runs
    _rowpack = None  # type: ignore[assignment]

MEMBERS: tuple[str, ...] = ("statistical", "iforest", "rforest")
#: How member probabilities are combined; training evaluates each and keeps the best.
#: ``vote`` is the median of the three probabilities: it reaches a threshold exactly when at least
#: two members do (2-of-3), so one member's false alarm alone never becomes an alert.
COMBINATIONS: tuple[str, ...] = ("stacked", "mean", "max", "vote", *MEMBERS)
_EPS = 1e-6
#: The bound of the calibrated member log-odds: wide enough that strong rule firings stay apart,
#: finite so that one wild raw output cannot own the stacker.
LOGIT_BOUND = 50.0
#: The stacker's input bound of models saved without one (their probabilities were clipped at _EPS),
#: and the clip of their statistical member's raw log-odds.
LEGACY_STACK_CLIP = math.log((1.0 - _EPS) / _EPS)
LEGACY_STAT_EPS = _EPS
#: The statistical layer's score is a sigmoid of its rule excess; reading its log-odds back with this
#: clip keeps excesses up to ~27.6 apart (float64 resolves 1 - 1e-12 to 4 significant digits).
STAT_EPS = 1e-12


def median_of_three(log_odds: np.ndarray) -> np.ndarray:
    """The middle of each row's three member log-odds: the 2-of-3 vote on the log-odds scale.

    Spelled as max(min(a, b), min(max(a, b), c)), element-wise: exact, and the same for a row
    whatever batch it is in.
    """
    a, b, c = log_odds[:, 0], log_odds[:, 1], log_odds[:, 2]
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)))


def stack_inputs(log_odds: np.ndarray) -> np.ndarray:
    """The stacker's inputs (n, 4): the members' calibrated log-odds, then their median.

    A linear stacker over the members alone adds their evidence up, so one member far past its
    threshold (a statistical rule firing at log-odds 20 on a busy but honest minute) outvotes two
    members that see nothing. The median column is what at least two members agree on: with it,
    the fitted weights can ask for agreement where it pays and still let a lone member speak
    where that pays, instead of choosing between the sum and the vote wholesale.
    """
    return np.column_stack([log_odds, median_of_three(log_odds)])


def logit(p: np.ndarray, eps: float = _EPS) -> np.ndarray:
    q = np.clip(p, eps, 1.0 - eps)
    return np.asarray(np.log(q / (1.0 - q)))


def stat_logit(scores: np.ndarray, eps: float = STAT_EPS) -> np.ndarray:
    """The statistical member's raw output: the log-odds of its rule score (its rule excess)."""
    return logit(scores, eps)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


@dataclass(frozen=True, slots=True)
class Platt:
    """p = sigmoid(a * raw + b); :meth:`log_odds` is a * raw + b, bounded at +/- LOGIT_BOUND."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(self.log_odds(raw))

    def log_odds(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.a * raw + self.b, -LOGIT_BOUND, LOGIT_BOUND)


@dataclass(slots=True)
class ModelBundle:
    """Trained forests plus the calibration that puts every member on one scale.

    Attributes
    ----------
    version : str
        Artifact version (content hash prefix); stamped on every alert.
    iforest, rforest : forests compiled by :mod:`models.forests` (or fitted scikit-learn
        estimators, which answer the same two calls; artifacts always hold compiled ones)
    calibration : dict of member name -> Platt
        Applied to the raw member outputs: statistical logit, ``-score_samples``, ``predict_proba``.
    stack_weights, stack_bias, stack_clip :
        Ensemble p = sigmoid(sum_i w_i * x_i + bias), x = :func:`stack_inputs` of the members'
        calibrated log-odds clipped at +/- stack_clip (``stack_clip`` is :data:`LEGACY_STACK_CLIP`
        for older artifacts; artifacts with three weights read the members' log-odds only).
    threshold : float
        The alert threshold chosen at training time (best event-level F1 on out-of-fold scores
        within a false-alarm budget).
    combination : str
        The combination rule (stacker, mean, max, 2-of-3 vote or one member alone) that evaluated best at
        training time; a single member winning is reported, not hidden.
    """

    version: str
    iforest: FlatForest
    rforest: FlatForest
    calibration: dict[str, Platt]
    stack_weights: tuple[float, ...]
    stack_bias: float
    info: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5  # alert threshold chosen by event-level evaluation at training time
    combination: str = "stacked"  # one of COMBINATIONS, chosen by event-level evaluation
    stack_clip: float = LOGIT_BOUND
    stat_eps: float = STAT_EPS  # the clip of the statistical member's raw log-odds (LEGACY_STAT_EPS before)

    def member_raw(self, x: np.ndarray, stat_scores: np.ndarray) -> np.ndarray:
        """Raw member outputs for a batch: shape (n, 3) in :data:`MEMBERS` order."""
        if len(x) == 0:
            return np.zeros((0, len(MEMBERS)))
        return np.column_stack([
            stat_logit(stat_scores, self.stat_eps),
            -self.iforest.score_samples(x),
            self.rforest.predict_proba(x)[:, 1],
        ])

    def member_log_odds(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated member log-odds (n, 3) from raw member outputs."""
        return np.column_stack([self.calibration[m].log_odds(raw[:, i]) for i, m in enumerate(MEMBERS)])

    def member_probs(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(self.member_log_odds(raw))

    def combine(self, log_odds: np.ndarray) -> np.ndarray:
        """Ensemble score from calibrated member log-odds (n, 3), by ``self.combination``."""
        return self._combine(log_odds, None)

    def _combine(self, log_odds: np.ndarray, probs: np.ndarray | None) -> np.ndarray:
        """:meth:`combine`, given the members' probabilities when the caller has them already."""
        if self.combination == "stacked":
            c = self.stack_clip
            clipped = np.clip(log_odds, -c, c)
            # Models from before the median input have one weight per member: they read the members only.
            if len(self.stack_weights) > len(MEMBERS):
                clipped = stack_inputs(clipped)
            # Column by column, not ``clipped @ weights``: a matrix product's last bit depends on the
            # batch's size (BLAS kernels), and a tick's score must not depend on its batch.
            z = np.full(len(clipped), self.stack_bias)
            for j, w in enumerate(self.stack_weights):
                z += w * clipped[:, j]
            return sigmoid(z)
        if probs is None:
            probs = sigmoid(log_odds)
        if self.combination == "mean":
            return np.asarray(probs.mean(axis=1))
        if self.combination == "max":
            return np.asarray(probs.max(axis=1))
        if self.combination == "vote":
            return np.asarray(np.median(probs, axis=1))
        if self.combination in MEMBERS:
            return np.asarray(probs[:, MEMBERS.index(self.combination)])
        raise ValueError(f"unknown combination {self.combination!r}")

    def score_batch(self, x: np.ndarray, stat_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble probability (n,) and member probabilities (n, 3) for one micro-batch."""
        return self._score_log_odds(self.member_log_odds(self.member_raw(x, stat_scores)))

    def _score_log_odds(self, log_odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = sigmoid(log_odds)  # once per batch, for the result and the rules that read probabilities
        return self._combine(log_odds, probs), probs


@dataclass(frozen=True, slots=True)
class Verdict:
    """The ensemble's word on one tick."""

    score: float
    severity: str
    confidence: float
    members: dict[str, float]  # member name -> calibrated probability

    def votes(self, threshold: float = 0.5) -> dict[str, bool]:
        return {name: p >= threshold for name, p in self.members.items()}


def severity_of(score: float, threshold: float) -> str:
    """Severity bands above the alert threshold: the remaining distance to 1 split in thirds."""
    if score < threshold:
        return "none"
    span = (1.0 - threshold) / 3.0
    if score >= 1.0 - 0.5 * span:
        return "critical"
    if score >= threshold + span:
        return "high"
    if score >= threshold + 0.5 * span:
        return "medium"
    return "low"


def confidence_of(score: float, members: dict[str, float], threshold: float) -> float:
    """Share of members that agree with the ensemble decision, weighted by how sure each is.

    1.0 when every member is on the same side of 0.5 as the ensemble and far from it; a lone
    member carrying the decision gives a low confidence.
    """
    flagged = score >= threshold
    agree = [abs(p - 0.5) * 2.0 if (p >= 0.5) == flagged else 0.0 for p in members.values()]
    return round(sum(agree) / len(agree), 4) if agree else 0.0


def verdicts(
    stat_scores: list[float], rows: list[list[float]], bundle: ModelBundle | None, threshold: float
) -> list[Verdict]:
    """Score a micro-batch: one model call per batch, then per-row verdicts."""
    if not stat_scores:
        return []
    if bundle is None:
        return [stat_verdict(s, threshold) for s in stat_scores]
    ens, probs = model_scores(stat_scores, rows, bundle)
    return [model_verdict(ens[i], probs[i].tolist(), threshold) for i in range(len(stat_scores))]


def rows_array(rows: list[list[float]]) -> npt.NDArray[np.float64]:
    """The model input rows as one float64 array (n, width; an empty list gives an empty array).

    A list of lists of numbers (what the pipeline builds) is packed in C when the kernel is built.
    Anything else goes to numpy, whose rules then decide: tuples, arrays, None (NaN), numeric strings,
    and the error for what it cannot convert.
    """
    if _rowpack is not None and type(rows) is list and rows and type(rows[0]) is list:
        try:
            return _rowpack.pack_rows(rows, len(rows[0]))
        except TypeError:  # a row that is no list, or a value float() refuses: numpy's rules decide
            pass
    return np.asarray(rows, dtype=np.float64)


def model_scores(
    stat_scores: list[float], rows: list[list[float]], bundle: ModelBundle
) -> tuple[list[float], npt.NDArray[np.float64]]:
    """The raw ensemble score of each row (Python floats) and the member probabilities (n, 3), in one model call.

    ``model_verdict(ens[i], probs[i].tolist(), threshold)`` is row i's verdict; the pipeline judges row i
    by ``models.pipeline.decision_score(ens[i])`` and builds the verdict only for a tick that raises an alert,
    so the probabilities stay an array: converting all of them to Python floats cost ~0.2 us a row, for
    the few rows that alert.
    """
    ens, probs = bundle.score_batch(rows_array(rows), np.asarray(stat_scores))
    # tolist() converts the float64s to Python floats in one C call, the same values as
    # float(ens[i]) element by element (which costs a numpy scalar per element).
    return ens.tolist(), probs


def model_verdict(s: float, probs: list[float], threshold: float) -> Verdict:
    """The verdict on one row from its raw ensemble score and member probabilities (MEMBERS order)."""
    members = {m: round(probs[j], 6) for j, m in enumerate(MEMBERS)}
    if not math.isfinite(s):  # pragma: no cover - guarded by finite inputs
        s = 0.0
    return Verdict(round(s, 6), severity_of(s, threshold), confidence_of(s, members, threshold), members)


def stat_verdict(s: float, threshold: float) -> Verdict:
    """The verdict on a tick without a model: the statistical layer's score used as is.

    Uncalibrated: its ``score`` is the rule score ``s`` itself, so the pipeline builds it only for a
    tick that raises an alert.
    """
    return Verdict(s, severity_of(s, threshold), 1.0 if s >= threshold else round(1.0 - s, 4), {"statistical": s})


@dataclass
class RecordingBundle(ModelBundle):
    """A bundle that keeps the calibrated member probabilities and log-odds of its model calls since
    :meth:`reset`, in call order.

    The pipeline returns only the ensemble score per tick; the worker's views and the NAB command
    also want each member's score (and the ablation every combination's). Recording them here costs
    no second model call. One ``Pipeline.process`` call scores a long batch in several model calls
    (one per step of ``MAX_TICKS_PER_STEP`` ticks), so a caller resets before ``process`` and reads
    one row per scored tick of the whole batch afterwards.
    """

    _probs: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    _log_odds: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def wrap(cls, bundle: ModelBundle) -> RecordingBundle:
        return cls(**{f.name: getattr(bundle, f.name) for f in fields(ModelBundle)})

    def reset(self) -> None:
        """Forget what was recorded (before the next batch)."""
        self._probs.clear()
        self._log_odds.clear()

    @property
    def recorded_probs(self) -> np.ndarray | None:
        """The member probabilities (n, 3) of every row scored since :meth:`reset`; None if none was."""
        return _joined(self._probs)

    @property
    def recorded_log_odds(self) -> np.ndarray | None:
        """The members' calibrated log-odds (n, 3), as :attr:`recorded_probs`."""
        return _joined(self._log_odds)

    def _score_log_odds(self, log_odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ens, probs = ModelBundle._score_log_odds(self, log_odds)
        self._probs.append(probs)
        self._log_odds.append(log_odds)
        return ens, probs


def _joined(chunks: list[np.ndarray]) -> np.ndarray | None:
    """The chunks as one array (kept as the only chunk, so a second read copies nothing); None if empty."""
    if not chunks:
        return None
    if len(chunks) > 1:
        chunks[:] = [np.concatenate(chunks)]
    return chunks[0]
