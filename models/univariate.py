"""A univariate value series through the tick pipeline (how NAB series are scored).

CryptoTrace scores trades. A benchmark such as NAB gives one number per row (CPU load, a
temperature, tweets per 5 minutes). :func:`value_ticks` maps such a series onto ticks so that
the *unchanged* product pipeline (:class:`models.pipeline.Pipeline`: feature engine,
statistical layer, optional forests) scores it, and :func:`alarm_scores` turns the per-tick
scores into per-row anomaly scores with the product's alert cooldown. The mapping is fixed in
advance (nothing in it looks at labels or scores):

* **One row = one 10-second bar.** Row ``i`` becomes one trade at ``start_ms + i * bar_ms``
  (``bar_ms`` = the feature engine's bar, 10 s). The bar indicators (1-minute change = 6 rows,
  momentum = 9 rows, volatility = 30 rows, Bollinger = 20 rows), the 10-minute grace period
  (60 rows), the 2-hour baseline (720 rows) and the 5-minute cooldown (30 rows) are then fixed
  numbers of rows, whatever the series' own sampling interval (NAB rows are 5 minutes apart in
  most files, an hour in some, irregular in a few). Row timestamps are kept only in the output.
* **Value -> price.** ``price = 100 * exp(0.01 * (v - m) / s)``: one robust standard deviation
  of the value is a 1 % price move, so additive changes of the value are relative price changes,
  which is what every price feature measures. ``m`` and ``s`` are the median and the scaled MAD
  (1.4826 x MAD) of the probationary rows, which NAB leaves unscored for detectors to learn
  from; when the MAD is 0 (counts that are mostly 0, flat stretches) the standard deviation of
  those rows, then ``max(|m|, 1)``. The log-price is clipped to +-50 (no overflow).
* **Quantity** is a constant 1 and the taker side unknown: a value series has no trades, so the
  volume, trade-rate, rush-order and imbalance features stay neutral and the price features
  (changes, momentum, volatility, runs of unchanged values = ``stale_price``) do the work.

Examples
--------
>>> import numpy as np
>>> ticks = value_ticks(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), probation=5)
>>> [t.timestamp - ticks[0].timestamp for t in ticks]
[0, 10000, 20000, 30000, 40000]
>>> round(ticks[1].price / ticks[0].price, 6) == round(float(np.exp(0.01 / 1.4826)), 6)
True
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from models.ticks import Tick

#: Symbol the series is streamed as (one series = one symbol, fresh state per series).
SERIES_SYMBOL = "SERIES"
#: 2020-09-13 12:26:40 UTC: any valid event time works; the features only see differences.
SERIES_START_MS = 1_600_000_000_000
PRICE_LEVEL = 100.0
MOVE_PER_SD = 0.01  # one robust standard deviation of the value = a 1 % price move
_MAD_TO_SD = 1.4826
_MAX_LOG = 50.0


def robust_scale(values: npt.ArrayLike) -> tuple[float, float]:
    """(centre, scale) of a sample: median and 1.4826 x MAD, else the std, else ``max(|median|, 1)``.

    Examples
    --------
    >>> robust_scale([1.0, 2.0, 3.0, 4.0, 100.0])
    (3.0, 1.4826)
    >>> robust_scale([5.0, 5.0, 5.0])
    (5.0, 5.0)
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 1.0
    centre = float(np.median(x))
    scale = _MAD_TO_SD * float(np.median(np.abs(x - centre)))
    if not scale > 0:
        scale = float(np.std(x))
    if not scale > 0:
        scale = max(abs(centre), 1.0)
    return centre, scale


def value_ticks(
    values: npt.ArrayLike,
    probation: int,
    *,
    symbol: str = SERIES_SYMBOL,
    start_ms: int = SERIES_START_MS,
    bar_ms: int = 10_000,
) -> list[Tick]:
    """One tick per row (see the module docstring); ``probation`` rows set the value scale.

    A non-finite value repeats the previous price (a missing reading is no move).
    """
    v = np.asarray(values, dtype=np.float64)
    if bar_ms <= 0:
        raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
    head = v[: max(1, probation)]
    centre, scale = robust_scale(head)
    log_p = np.clip(MOVE_PER_SD * (v - centre) / scale, -_MAX_LOG, _MAX_LOG)
    prices: list[float] = []
    last = PRICE_LEVEL
    for lp in log_p.tolist():
        if math.isfinite(lp):
            last = PRICE_LEVEL * math.exp(lp)
        prices.append(last)
    return [Tick(symbol, p, 1.0, start_ms + i * bar_ms) for i, p in enumerate(prices)]


def cooldown_alarms(scores: npt.ArrayLike, threshold: float, cooldown_rows: int) -> npt.NDArray[np.bool_]:
    """Rows that raise an alert under the product's rule: score ``>= threshold`` and no alert in the
    ``cooldown_rows`` rows before (an alert at row ``j`` silences rows ``j + 1 .. j + cooldown_rows - 1``).

    Examples
    --------
    >>> cooldown_alarms([0.1, 0.9, 0.8, 0.95, 0.2, 0.7], 0.5, cooldown_rows=3).tolist()
    [False, True, False, False, False, True]
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    if cooldown_rows < 0:
        raise ValueError(f"cooldown_rows must be >= 0, got {cooldown_rows}")
    hits = np.flatnonzero(s >= threshold)
    out = np.zeros(s.shape, dtype=np.bool_)
    if cooldown_rows <= 1:
        out[hits] = True
        return out
    i = 0
    while i < hits.size:
        row = int(hits[i])
        out[row] = True
        i = int(np.searchsorted(hits, row + cooldown_rows, side="left"))
    return out


def alarm_scores(scores: npt.ArrayLike, threshold: float, cooldown_rows: int) -> npt.NDArray[np.float64]:
    """Per-row scores in which the rows the cooldown silences at ``threshold`` are set to 0.

    Scored with NAB's rule (a detection is a row ``>= threshold``) at ``threshold``, the result
    gives exactly the product's alerts (:func:`cooldown_alarms`); a run of high rows is then one
    alarm, as in the worker, not one false positive per row. At a higher threshold it gives the
    subset of those alerts scoring above it; rows below ``threshold`` keep their score.

    Examples
    --------
    >>> alarm_scores([0.1, 0.9, 0.8, 0.95, 0.2, 0.7], 0.5, cooldown_rows=3).tolist()
    [0.1, 0.9, 0.0, 0.0, 0.2, 0.7]
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    silenced = (s >= threshold) & ~cooldown_alarms(s, threshold, cooldown_rows)
    return np.where(silenced, 0.0, s)
