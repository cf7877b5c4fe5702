"""The NAB value -> tick mapping and the alert-cooldown scores (models.univariate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import nab
from models.univariate import (
    MOVE_PER_SD,
    PRICE_LEVEL,
    alarm_scores,
    cooldown_alarms,
    robust_scale,
    value_ticks,
)

# Values on a grid (1e-2): an offset must not wipe out differences by float rounding.
values = st.lists(st.integers(-10**6, 10**6).map(lambda i: i / 100), min_size=2, max_size=60)


def test_robust_scale_fallbacks() -> None:
    assert robust_scale([1.0, 2.0, 3.0, 4.0, 100.0]) == (3.0, 1.4826)  # MAD = 1
    c, s = robust_scale([0.0, 0.0, 0.0, 0.0, 8.0])  # MAD 0 -> std
    assert c == 0.0 and s == pytest.approx(np.std([0, 0, 0, 0, 8.0]))
    assert robust_scale([-7.0, -7.0]) == (-7.0, 7.0)  # constant -> |median|
    assert robust_scale([0.0]) == (0.0, 1.0)
    assert robust_scale([]) == (0.0, 1.0)


def test_value_ticks_rows_are_bars_and_values_relative_moves() -> None:
    v = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 1e9, np.nan, 12.0])
    ticks = value_ticks(v, probation=5, bar_ms=10_000)
    assert [t.timestamp - ticks[0].timestamp for t in ticks] == [10_000 * i for i in range(8)]
    assert all(t.quantity == 1.0 and t.side is None and t.price > 0 for t in ticks)
    # median 12, MAD 1 -> scale 1.4826: price = 100 exp(0.01 (v - 12) / 1.4826)
    assert ticks[2].price == pytest.approx(PRICE_LEVEL)
    assert ticks[3].price == pytest.approx(PRICE_LEVEL * math.exp(MOVE_PER_SD / 1.4826))
    assert ticks[5].price == pytest.approx(PRICE_LEVEL * math.exp(50.0))  # clipped, finite
    assert ticks[6].price == ticks[5].price  # a missing value repeats the last price


@given(values, st.floats(0.1, 100.0), st.floats(-1e3, 1e3))
@settings(max_examples=60, deadline=None)
def test_value_ticks_is_affine_invariant(v: list[float], a: float, b: float) -> None:
    """Units and offsets of the value do not matter: the prices are the same."""
    x = np.asarray(v)
    p1 = [t.price for t in value_ticks(x, probation=len(v))]
    p2 = [t.price for t in value_ticks(a * x + b, probation=len(v))]
    np.testing.assert_allclose(p1, p2, rtol=1e-6)


scores = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80)


@given(scores, st.floats(0.05, 0.95), st.integers(0, 10))
@settings(max_examples=100, deadline=None)
def test_cooldown_alarms_rule(s: list[float], thr: float, k: int) -> None:
    alarms = np.flatnonzero(cooldown_alarms(s, thr, k))
    assert all(s[i] >= thr for i in alarms)
    assert all(b - a >= max(k, 1) for a, b in zip(alarms[:-1], alarms[1:], strict=False))
    # every row at or above the threshold is an alarm or within k rows after one
    for i, x in enumerate(s):
        if x >= thr:
            assert any(0 <= i - a < max(k, 1) for a in alarms)


@given(scores, st.floats(0.05, 0.95), st.integers(0, 10))
@settings(max_examples=100, deadline=None)
def test_alarm_scores_reproduce_the_alerts_under_nab_rule(s: list[float], thr: float, k: int) -> None:
    out = alarm_scores(s, thr, k)
    np.testing.assert_array_equal(out >= thr, cooldown_alarms(s, thr, k))
    assert np.all((out == np.asarray(s)) | (out == 0.0))


def test_nab_score_of_alarm_scores_equals_binary_alarms() -> None:
    rng = np.random.default_rng(3)
    n = 400
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000
    layout = nab.layout_file(ts, [(ts[200], ts[240])])
    s = rng.random(n) ** 4
    a = nab.score_file(layout, alarm_scores(s, 0.6, 30), nab.STANDARD, 0.6).raw
    b = nab.score_file(layout, cooldown_alarms(s, 0.6, 30).astype(float), nab.STANDARD, 0.5).raw
    assert a == pytest.approx(b)
