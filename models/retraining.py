"""Periodic retraining of the unsupervised member on recent normal data, without stopping the stream.

Markets drift; an IsolationForest fitted once on training data slowly starts to call the new
normal anomalous. :class:`Retrainer` watches the pipeline's micro-batch results and keeps a
bounded reservoir of recent *normal* model rows:

* a row enters only once ``quiet_s`` of event time has passed after it, and only if its symbol
  raised no alert within ``quiet_s`` before or after it (rows near an alert are never learned,
  whatever the alert turns out to be), and its score was below the alert threshold;
* rows are sampled with probability ``sample_rate`` (seeded: the same stream gives the same
  reservoir), so the reservoir spans hours of a busy market rather than its last minutes;
* the reservoir holds the ``reservoir_size`` most recent sampled rows (FIFO).

Every ``every_rows`` sampled rows, once ``min_interval_s`` of event time has passed since the last
refit and the reservoir holds ``min_rows``, :meth:`Retrainer.observe` returns a
:class:`RefitRequest`: a copy of the reservoir and the current bundle. ``RefitRequest.fit()`` is
pure CPU work with no shared state, so the worker runs it in a thread while the stream goes on,
and swaps the new bundle in between two batches. The new bundle has a new IsolationForest, the
iforest member's Platt intercept re-anchored so that the reservoir's median row keeps the
probability it had under the old forest (no labels are needed; the slope is kept), and a new
version ``<base>-r<generation>-<hash of the reservoir>``, which the pipeline stamps on every alert.

Everything else (statistical layer, random forest, stacker, threshold) is unchanged: they were
chosen on labelled data, which a live stream does not have.

Examples
--------
>>> import numpy as np
>>> from models.ensemble import ModelBundle, Platt
>>> from sklearn.ensemble import IsolationForest, RandomForestClassifier
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 3))
>>> rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, (x[:, 0] > 1).astype(int))
>>> b = ModelBundle("m-base", IsolationForest(n_estimators=10, random_state=0).fit(x), rf,
...                 {m: Platt() for m in ("statistical", "iforest", "rforest")}, (1.0, 1.0, 1.0), 0.0)
>>> r = Retrainer(b, RetrainConfig(every_rows=100, min_rows=100, sample_rate=1.0, quiet_s=0.0,
...                                 min_interval_s=0.0, n_estimators=10))
>>> req = r.observe_rows(x, ["X"] * 400, list(range(0, 400_000, 1000)), [0.0] * 400, [], 0.5)
>>> new = req.fit()
>>> new.version.startswith("m-base-r1-"), new.rforest is rf
(True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.ensemble import MEMBERS, ModelBundle, Platt
from models.forests import compile_forest
from models.pipeline import BatchResult
from models.ticks import Tick

_IFOREST = MEMBERS.index("iforest")


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    """When and on what the IsolationForest is refitted (see the module docstring)."""

    every_rows: int = 20_000  # sampled rows between refits
    min_interval_s: float = 3600.0  # event time between refits
    reservoir_size: int = 20_000
    min_rows: int = 5_000
    sample_rate: float = 0.05
    quiet_s: float = 1800.0  # rows this close (event time) to an alert of their symbol are never learned
    max_pending: int = 200_000  # rows waiting for their quiet period (oldest dropped beyond)
    n_estimators: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.reservoir_size < 2 or self.min_rows < 2 or self.min_rows > self.reservoir_size:
            raise ValueError("need 2 <= min_rows <= reservoir_size")
        if self.every_rows < 1 or self.n_estimators < 1 or self.max_pending < 1:
            raise ValueError("every_rows, n_estimators and max_pending must be >= 1")
        if self.quiet_s < 0 or self.min_interval_s < 0:
            raise ValueError("quiet_s and min_interval_s must be >= 0")


@dataclass(frozen=True)
class RefitRequest:
    """A refit to run off the event loop: ``fit()`` touches nothing but its own copies."""

    bundle: ModelBundle
    rows: np.ndarray
    generation: int
    n_estimators: int
    seed: int
    event_time_ms: int

    def fit(self) -> ModelBundle:
        """A new bundle: refitted IsolationForest, re-anchored iforest calibration, new version."""
        from sklearn.ensemble import IsolationForest  # noqa: PLC0415 - only a refit needs scikit-learn

        forest = compile_forest(IsolationForest(n_estimators=self.n_estimators,
                                                random_state=self.seed + self.generation, n_jobs=1).fit(self.rows))
        old_raw = float(np.median(-self.bundle.iforest.score_samples(self.rows)))
        new_raw = float(np.median(-forest.score_samples(self.rows)))
        cal = dict(self.bundle.calibration)
        old = cal["iforest"]
        cal["iforest"] = Platt(old.a, old.b + old.a * (old_raw - new_raw))
        digest = hashlib.sha256(np.ascontiguousarray(self.rows).tobytes()).hexdigest()[:8]
        base = self.bundle.info.get("retrained", {}).get("base_version", self.bundle.version)
        info: dict[str, Any] = {**self.bundle.info, "retrained": {
            "base_version": base, "generation": self.generation, "rows": int(len(self.rows)),
            "event_time_ms": self.event_time_ms, "iforest_median_raw": [round(old_raw, 6), round(new_raw, 6)]}}
        return dataclasses.replace(self.bundle, version=f"{base}-r{self.generation}-{digest}", iforest=forest,
                                   calibration=cal, info=info)


class Retrainer:
    """Collects recent normal rows from batch results and asks for refits (see the module docstring)."""

    def __init__(self, bundle: ModelBundle, config: RetrainConfig | None = None) -> None:
        self.config = config or RetrainConfig()
        self.bundle = bundle
        self.reservoir: deque[tuple[float, ...]] = deque(maxlen=self.config.reservoir_size)
        self.pending: deque[tuple[int, str, tuple[float, ...]]] = deque()
        self.last_alert: dict[str, int] = {}
        self.rng = np.random.default_rng(self.config.seed)
        self.generation = 0
        self.sampled_since_refit = 0
        self.last_refit_ms: int | None = None
        self.latest_ms: int | None = None

    def adopt(self, bundle: ModelBundle) -> None:
        """The bundle the worker now runs (after a refit, or a new artifact)."""
        self.bundle = bundle

    def observe(self, result: BatchResult, ticks: Sequence[Tick], threshold: float) -> RefitRequest | None:
        """Fold in one batch's result (``ticks`` = the batch given to ``Pipeline.process``)."""
        idx = result.model_row_ticks
        scores = [result.scores[i] for i in idx]
        return self.observe_rows(result.model_rows, [ticks[i].symbol for i in idx],
                                 [ticks[i].timestamp for i in idx], [0.0 if s is None else s for s in scores],
                                 [(a.symbol, a.event_time) for a in result.alerts], threshold)

    def observe_rows(self, rows: Sequence[Sequence[float]] | np.ndarray, symbols: Sequence[str],
                     times: Sequence[int], scores: Sequence[float], alerts: Sequence[tuple[str, int]],
                     threshold: float) -> RefitRequest | None:
        """The same from plain columns (rows in event-time order per symbol)."""
        cfg = self.config
        for sym, t in alerts:
            self.last_alert[sym] = max(t, self.last_alert.get(sym, t))
        # A pending row is dropped if its symbol alerted after it; then it graduates after quiet_s.
        draws = self.rng.random(len(symbols)) if len(symbols) else np.zeros(0)
        for k, (sym, t, s) in enumerate(zip(symbols, times, scores, strict=True)):
            self.latest_ms = t if self.latest_ms is None else max(self.latest_ms, t)
            if s >= threshold or draws[k] >= cfg.sample_rate:
                continue
            alerted = self.last_alert.get(sym)
            if alerted is not None and t - alerted < cfg.quiet_s * 1000:
                continue
            self.pending.append((t, sym, tuple(float(v) for v in rows[k])))
        while len(self.pending) > cfg.max_pending:
            self.pending.popleft()
        self._graduate()
        return self._maybe_request()

    def _graduate(self) -> None:
        if self.latest_ms is None:
            return
        quiet_ms = self.config.quiet_s * 1000
        while self.pending:
            t, sym, row = self.pending[0]
            if self.latest_ms - t < quiet_ms:
                break
            self.pending.popleft()
            alerted = self.last_alert.get(sym)
            if alerted is not None and abs(alerted - t) < quiet_ms:
                continue  # an alert followed within the quiet period: not normal enough to learn
            if all(math.isfinite(v) for v in row):
                self.reservoir.append(row)
                self.sampled_since_refit += 1

    def _maybe_request(self) -> RefitRequest | None:
        cfg = self.config
        now = self.latest_ms
        if now is None or self.sampled_since_refit < cfg.every_rows or len(self.reservoir) < cfg.min_rows:
            return None
        if self.last_refit_ms is not None and now - self.last_refit_ms < cfg.min_interval_s * 1000:
            return None
        return self._request(now)

    def request_now(self) -> RefitRequest | None:
        """A refit on what the reservoir holds now, whatever the schedule; None below ``min_rows``.

        For a job that reads a window of history and refits once at its end. Rows still inside
        their quiet period stay out: nothing says yet whether an alert follows them.
        """
        self._graduate()
        if self.latest_ms is None or len(self.reservoir) < self.config.min_rows:
            return None
        return self._request(self.latest_ms)

    def _request(self, now: int) -> RefitRequest:
        cfg = self.config
        self.generation += 1
        self.sampled_since_refit = 0
        self.last_refit_ms = now
        rows = np.asarray(list(self.reservoir), dtype=np.float64)
        return RefitRequest(self.bundle, rows, self.generation, cfg.n_estimators, cfg.seed, now)
