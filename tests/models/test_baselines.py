"""Baselines of the ablation (models.baselines) against plain references."""

from __future__ import annotations

import numpy as np

from models.baselines import random_alarms, rolling_z_scores


def _reference(times: np.ndarray, prices: np.ndarray, bar_ms: int, lag: int, window: int) -> np.ndarray:
    bar = (times - times[0]) // bar_ms
    n = int(bar[-1]) + 1
    close = np.full(n, np.nan)
    for b, p in zip(bar, prices, strict=True):
        close[b] = np.log(p)
    for b in range(1, n):
        if np.isnan(close[b]):
            close[b] = close[b - 1]
    r = [close[b] - close[b - lag] if b >= lag else np.nan for b in range(n)]
    out = []
    for b, p in zip(bar, prices, strict=True):
        past = [x for x in r[max(0, b - window):b] if not np.isnan(x)]
        if len(past) < window or b < lag:
            out.append(0.0)
            continue
        z = abs(np.log(p) - close[b - lag] - np.mean(past)) / max(np.std(past), 1e-4)
        out.append(z / (1 + z))
    return np.asarray(out)


def test_rolling_z_matches_a_plain_reference() -> None:
    rng = np.random.default_rng(5)
    times = np.sort(rng.integers(0, 600_000, 300)).astype(np.int64)
    prices = np.exp(rng.normal(0, 0.01, 300).cumsum())
    got = rolling_z_scores(times, prices, bar_ms=5_000, lag_bars=3, window_bars=20)
    np.testing.assert_allclose(got, _reference(times, prices, 5_000, 3, 20), atol=1e-9)
    assert rolling_z_scores(np.zeros(0, dtype=np.int64), np.zeros(0)).size == 0


def test_random_alarms_rate_and_determinism() -> None:
    spans = {"A": (0, 50 * 86_400_000), "B": (0, 50 * 86_400_000)}
    a = random_alarms(spans, 3.0, seed=2)
    assert a == random_alarms(spans, 3.0, seed=2)
    assert 200 < len(a) < 400  # Poisson(300) in all
    assert random_alarms(spans, 0.0, seed=2) == []
