"""Baseline detectors the ensemble is compared with (pure numpy, vectorised per symbol).

* :func:`rolling_z_scores`: the textbook rolling z-score rule on prices. Per symbol, 10-second
  event-time bars (last trade price, carried over empty bars); a tick's statistic is its log-price
  change against the close ``lag_bars`` bars before its bar (1 minute), standardised by the mean and
  standard deviation of the same bar-to-bar statistic over the ``window_bars`` bars before its bar
  (1 hour), the standard deviation floored at ``min_sd`` (1e-4, one basis point: an illiquid coin
  whose price did not move for an hour would otherwise give an infinite z to its next trade).
  Score ``|z| / (1 + |z|)`` in [0, 1) (monotone in ``|z|``), 0 until the window has filled.
* :func:`random_alarms`: alarms at uniformly random times, at a given rate per symbol-day.
* never alarming needs no code: no alarms.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def rolling_z_scores(
    times: npt.NDArray[np.int64], prices: FloatArray, *, bar_ms: int = 10_000, lag_bars: int = 6,
    window_bars: int = 360, min_sd: float = 1e-4,
) -> FloatArray:
    """Rolling z-score of one symbol's ticks (time order), see the module docstring.

    Examples
    --------
    >>> t = np.arange(0, 4000 * 10_000, 10_000, dtype=np.int64)
    >>> p = np.exp(np.random.default_rng(0).normal(0, 1e-3, t.size).cumsum())
    >>> p[3000] *= 1.05  # a 5 % jump
    >>> s = rolling_z_scores(t, p)
    >>> float(s[:360].max()), int(np.argmax(s)), bool(s[3000] > 0.9)
    (0.0, 3000, True)
    """
    if times.size == 0:
        return np.zeros(0)
    if lag_bars < 1 or window_bars < 2:
        raise ValueError("lag_bars must be >= 1 and window_bars >= 2")
    bar = (times - times[0]) // bar_ms
    n_bars = int(bar[-1]) + 1
    close = np.full(n_bars, np.nan)
    close[bar] = np.log(prices)  # the last tick of a bar wins (assignment keeps the last)
    idx = np.where(np.isfinite(close), np.arange(n_bars), 0)
    close = close[np.maximum.accumulate(idx)]  # carry the last close over empty bars
    r = np.full(n_bars, np.nan)
    r[lag_bars:] = close[lag_bars:] - close[:-lag_bars]
    # Mean and std of r over bars [b - window, b - 1], by cumulative sums (nan -> not counted).
    ok = np.isfinite(r)
    c0 = np.concatenate([[0.0], np.cumsum(ok)])
    c1 = np.concatenate([[0.0], np.cumsum(np.where(ok, r, 0.0))])
    c2 = np.concatenate([[0.0], np.cumsum(np.where(ok, r * r, 0.0))])
    hi = np.arange(n_bars)
    lo = np.maximum(hi - window_bars, 0)
    cnt = c0[hi] - c0[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[hi] - c1[lo]) / cnt
        var = (c2[hi] - c2[lo]) / cnt - mean * mean
    sd = np.sqrt(np.maximum(var, 0.0))
    prev = bar - lag_bars
    x = np.log(prices) - np.where(prev >= 0, close[np.maximum(prev, 0)], np.nan)
    m, s, full = mean[bar], sd[bar], cnt[bar] >= window_bars
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.abs(x - m) / np.maximum(s, min_sd)
    z = np.where(full & np.isfinite(z), z, 0.0)
    return np.asarray(z / (1.0 + z), dtype=np.float64)


def random_alarms(
    spans: Mapping[str, tuple[int, int]], per_symbol_day: float, seed: int
) -> list[tuple[str, int]]:
    """Poisson(rate x days) alarms per symbol at uniform times in its span, as (symbol, ms).

    Examples
    --------
    >>> a = random_alarms({"X": (0, 10 * 86_400_000)}, 2.0, seed=1)
    >>> 5 < len(a) < 40, all(0 <= t <= 10 * 86_400_000 for _, t in a)
    (True, True)
    """
    rng = np.random.default_rng(seed)
    out: list[tuple[str, int]] = []
    for sym in sorted(spans):
        a, b = spans[sym]
        k = int(rng.poisson(per_symbol_day * max(0, b - a) / 86_400_000))
        out.extend((sym, int(t)) for t in np.sort(rng.integers(a, b + 1, k)))
    return out
