"""Per-symbol adaptive alert thresholds that never learn from what they flag.

One global threshold treats every symbol alike, but scores of some symbols run hot: a thin
book whose volatility clusters, a coin with bursty activity. :class:`AdaptiveThreshold` keeps,
per symbol, an event-time exponentially weighted mean and variance of the *logit* of the
symbol's own score (the scale calibrated probabilities and the statistical layer's rule
excesses both live on) and raises that symbol's threshold to ``mean + k * std`` when that is
above the global one:

    threshold_sym = sigmoid(max(logit(threshold), mean + k * std))

It is **off by default** (``AdaptiveConfig(enabled=True)`` switches it on): on the held-out
synthetic seeds it cost recall on stale-price events, whose score ramps up slowly below the
threshold before crossing it, and those sub-threshold ticks teach the symbol's threshold
(see the README). It never goes below the global threshold. It learns only ticks that it did **not** flag (a tick
at or above ``threshold_sym`` is left out, like the statistical layer's protected baselines), so
a pump cannot raise the bar for itself, and each learned value is clipped to the global logit
threshold, so a run of near-misses cannot drag the tail up without bound. Before
``min_ticks`` learned ticks the global threshold applies.

The pipeline compares ``adjusted_score`` with the global threshold: it shifts the score's logit
down by the symbol's excess, so ``adjusted >= threshold`` exactly when ``score >= threshold_sym``,
and every consumer of per-tick scores (alert replays, threshold curves, NAB) sees the decision
the worker makes.

Examples
--------
>>> at = AdaptiveThreshold(AdaptiveConfig(enabled=True, min_ticks=3))
>>> for i in range(5):
...     at.learn(1_000 * i, 0.01, 0.5)   # quiet: logit(0.01) = -4.6
>>> round(at.threshold(0.5), 6)          # its tail is far below the global threshold
0.5
>>> hot = AdaptiveThreshold(AdaptiveConfig(enabled=True, min_ticks=3, k=2.0))
>>> for i, s in enumerate([0.2, 0.45, 0.3, 0.49, 0.1, 0.48]):
...     hot.learn(1_000 * i, s, 0.5)
>>> hot.threshold(0.5) > 0.5, hot.adjusted(0.9, 0.5) < 0.9
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from models._fastinit import field_values
from models.detectors.statistical import Baseline

_EPS: Final = 1e-9


def _logit(p: float) -> float:
    q = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(q / (1.0 - q))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    """Per-symbol threshold settings; ``enabled=False`` = one global threshold.

    ``tau_s``: event-time memory of the score distribution (2 h, as the statistical baselines).
    ``k``: how many standard deviations of the symbol's own logit score the threshold keeps
    above its mean. ``min_ticks``: learned ticks before the symbol's own threshold applies.
    """

    enabled: bool = False  # off by default: see the README ("Per-symbol adaptive thresholds") for why
    tau_s: float = 7200.0
    k: float = 4.0  # chosen on the development seeds 42 and 43 (k = 3, 4, 6, 8 tried; see the README)
    min_ticks: int = 200

    def __post_init__(self) -> None:
        if self.tau_s <= 0:
            raise ValueError(f"tau_s must be > 0, got {self.tau_s}")
        if self.k <= 0:
            raise ValueError(f"k must be > 0, got {self.k}")
        if self.min_ticks < 1:
            raise ValueError(f"min_ticks must be >= 1, got {self.min_ticks}")

    def __reduce__(self) -> tuple[type[AdaptiveConfig], tuple[Any, ...]]:
        return AdaptiveConfig, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


class AdaptiveThreshold:
    """One symbol's threshold (see the module docstring)."""

    __slots__ = ("config", "base")

    def __init__(self, config: AdaptiveConfig | None = None) -> None:
        self.config = config or AdaptiveConfig()
        self.base = Baseline(self.config.tau_s)

    def excess(self, global_threshold: float) -> float:
        """How far (logit units, >= 0) this symbol's threshold sits above the global one."""
        cfg = self.config
        if not cfg.enabled or self.base.n < cfg.min_ticks:
            return 0.0
        tail = self.base.mean + cfg.k * self.base.std()
        return max(0.0, tail - _logit(global_threshold))

    def threshold(self, global_threshold: float) -> float:
        """This symbol's alert threshold (never below the global one; exactly it when not raised)."""
        ex = self.excess(global_threshold)
        return global_threshold if ex <= 0.0 else max(global_threshold, _sigmoid(_logit(global_threshold) + ex))

    def adjusted(self, score: float, global_threshold: float) -> float:
        """``score`` shifted so that comparing it with the global threshold applies this symbol's."""
        ex = self.excess(global_threshold)
        if ex <= 0.0 or score <= 0.0:
            return score
        return _sigmoid(_logit(score) - ex)

    def learn(self, t_ms: int, score: float, global_threshold: float) -> None:
        """Fold in one active tick's score unless this threshold flags it (protection)."""
        if not self.config.enabled or score >= self.threshold(global_threshold):
            return
        self.base.update(t_ms, min(_logit(score), _logit(global_threshold)))

    def step(self, t_ms: int, score: float, global_threshold: float) -> tuple[float, float]:
        """``(adjusted(score), threshold())`` then ``learn(t_ms, score)``: the pipeline's per-tick use.

        The same results as the three calls in that order (the excess is computed once: nothing
        changes between them), with an early return when the adaptive threshold is off (the
        default), where it is the identity: ``(score, global_threshold)`` and nothing learned.
        """
        cfg = self.config
        if not cfg.enabled:
            return score, global_threshold
        ex = self.excess(global_threshold)
        if ex <= 0.0:
            adjusted, threshold = score, global_threshold
        else:
            adjusted = score if score <= 0.0 else _sigmoid(_logit(score) - ex)
            threshold = max(global_threshold, _sigmoid(_logit(global_threshold) + ex))
        if not score >= threshold:  # learn() returns on score >= threshold (also false for nan)
            self.base.update(t_ms, min(_logit(score), _logit(global_threshold)))
        return adjusted, threshold

    def to_state(self) -> list[float]:
        return self.base.to_state()

    @classmethod
    def from_state(cls, state: list[float] | None, config: AdaptiveConfig | None = None) -> AdaptiveThreshold:
        out = cls(config)
        if state:
            out.base = Baseline.from_state(state)
        return out

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"AdaptiveThreshold(n={self.base.n}, mean={self.base.mean:.3f}, std={self.base.std():.3f})"


def adaptive_state(snapshot_state: dict[str, Any]) -> list[float] | None:
    """The adaptive-threshold part of a snapshot's state (absent in schema version 1)."""
    value = snapshot_state.get("thr")
    return list(value) if value else None
