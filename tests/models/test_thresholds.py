"""Per-symbol adaptive thresholds (models.thresholds) and their place in the pipeline."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline import Pipeline, PipelineConfig, SymbolSnapshot
from models.thresholds import AdaptiveConfig, AdaptiveThreshold
from tests.models.test_pipeline import scenario

prob = st.floats(1e-6, 1.0 - 1e-6)


def test_config_validation() -> None:
    for bad in ({"tau_s": 0.0}, {"k": 0.0}, {"min_ticks": 0}):
        with pytest.raises(ValueError):
            AdaptiveConfig(**bad)  # type: ignore[arg-type]


@given(st.lists(prob, min_size=0, max_size=300), st.floats(0.05, 0.95), prob)
@settings(max_examples=80, deadline=None)
def test_never_below_global_and_adjusted_decides_like_the_symbol_threshold(
    history: list[float], thr: float, score: float
) -> None:
    at = AdaptiveThreshold(AdaptiveConfig(enabled=True, min_ticks=5, k=2.0))
    for i, s in enumerate(history):
        at.learn(1000 * i, s, thr)
    sym = at.threshold(thr)
    assert sym >= thr - 1e-12
    adj = at.adjusted(score, thr)
    assert adj <= score + 1e-12
    if abs(score - sym) > 1e-9:
        assert (adj >= thr) == (score >= sym)


@given(st.lists(prob, min_size=1, max_size=200), st.floats(0.05, 0.95))
@settings(max_examples=60, deadline=None)
def test_flagged_ticks_are_not_learned(history: list[float], thr: float) -> None:
    at = AdaptiveThreshold(AdaptiveConfig(enabled=True, min_ticks=3, k=2.0))
    for i, s in enumerate(history):
        before = at.to_state()
        flagged = s >= at.threshold(thr)
        at.learn(1000 * i, s, thr)
        if flagged:
            assert at.to_state() == before


def test_hot_symbol_gets_a_higher_threshold_quiet_one_keeps_the_global() -> None:
    on = AdaptiveConfig(enabled=True, min_ticks=10)
    quiet, hot = AdaptiveThreshold(on), AdaptiveThreshold(on)
    for i in range(500):
        quiet.learn(1000 * i, 1e-4, 0.9)
        hot.learn(1000 * i, 0.3 + 0.6 * (i % 2), 0.9)  # 0.3 and 0.89 alternately: a noisy score
    assert quiet.threshold(0.9) == pytest.approx(0.9)
    assert hot.threshold(0.9) > 0.99
    assert AdaptiveThreshold(AdaptiveConfig(enabled=False)).threshold(0.9) == pytest.approx(0.9)


def test_state_round_trip_and_version_1_snapshots_still_load() -> None:
    ticks, _ = scenario()
    cfg = PipelineConfig()
    snaps: dict[str, SymbolSnapshot] = {}
    Pipeline(cfg).process(snaps, list(ticks[:3000]))
    for snap in snaps.values():
        state = json.loads(json.dumps(snap.to_state()))
        assert state["schema_version"] == 2
        again = SymbolSnapshot.from_state(state, cfg)
        assert again.to_state() == snap.to_state()
        old = {k: v for k, v in state.items() if k != "thr"} | {"schema_version": 1}
        migrated = SymbolSnapshot.from_state(old, cfg)
        assert migrated.adaptive.base.n == 0 and migrated.features.to_state() == snap.features.to_state()


def test_off_by_default_and_alerts_carry_the_symbol_threshold() -> None:
    assert PipelineConfig().adaptive.enabled is False
    ticks, _ = scenario()
    off = Pipeline(PipelineConfig()).process({}, list(ticks))
    assert off.alerts and all(a.threshold == 0.5 for a in off.alerts)
    on = Pipeline(PipelineConfig(adaptive=AdaptiveConfig(enabled=True, min_ticks=50))).process({}, list(ticks))
    assert on.alerts and all(a.threshold >= 0.5 and a.score >= a.threshold - 1e-6 for a in on.alerts)
    # the per-tick scores are what the alert decision compares with the global threshold
    assert all(s is not None for s in on.scores)
    for a in on.alerts:  # (several fills can share the alert's millisecond)
        same = [k for k, t in enumerate(ticks) if t.symbol == a.symbol and t.timestamp == a.event_time]
        assert max(on.scores[k] or 0.0 for k in same) >= 0.5


@given(st.integers(1, 2000))
@settings(max_examples=5, deadline=None)
def test_adaptive_result_does_not_depend_on_batch_boundaries(size: int) -> None:
    """Replay equals live with per-symbol thresholds on too: they update tick by tick."""
    ticks = list(scenario()[0][:6000])
    cfg = PipelineConfig(adaptive=AdaptiveConfig(enabled=True, min_ticks=50, k=2.0))
    whole = Pipeline(cfg).process({}, ticks)
    snaps: dict[str, SymbolSnapshot] = {}
    scores: list[float | None] = []
    alerts = []
    for lo in range(0, len(ticks), size):
        res = Pipeline(cfg).process(snaps, ticks[lo:lo + size])
        scores += res.scores
        alerts += res.alerts
    assert scores == whole.scores
    assert [a.to_dict() for a in alerts] == [a.to_dict() for a in whole.alerts]
