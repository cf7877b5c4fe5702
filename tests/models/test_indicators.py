"""Tests of models.indicators.

Each streaming indicator is checked against a deliberately naive batch
reference (numpy / plain loops over the whole prefix) after *every* update,
then Hypothesis checks the structural properties: exact state round trip,
warm-up ``None`` semantics, ranges and numerical stability.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.indicators import (
    EMA,
    MACD,
    DecayingRate,
    Lag,
    RollingMeanStd,
    TimeEWMeanVar,
    WilderRSI,
)

# Deterministic and quick: derandomize, no example database on disk, no deadline
# (first-call import costs would trip it). A settings object, not a loaded
# profile, so other test modules in the same session are not affected.
PROPS = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BASE_MS = 1_700_000_000_000
DAY_MS = 86_400_000


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def json_round_trip(state: list[Any]) -> list[Any]:
    out = json.loads(json.dumps(state))
    assert isinstance(out, list)
    return out


# ---------------------------------------------------------------------------
# Batch references: independent of the streaming recursions where possible.
# ---------------------------------------------------------------------------


def ema_weights(n: int, span: int) -> np.ndarray:
    """Lower-triangular matrix W with (W @ x)[j] = EMA(adjust=False) of x[: j + 1].

    Closed form: ema_j = (1-a)^j x_0 + sum_{i=1..j} a (1-a)^(j-i) x_i.
    """
    a = 2.0 / (span + 1)
    j = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    lag = np.maximum(j - i, 0)
    w = np.where(i == 0, (1.0 - a) ** lag, a * (1.0 - a) ** lag)
    return np.where(i <= j, w, 0.0)


def ref_ema(xs: Sequence[float], span: int) -> float | None:
    if not xs:
        return None
    return float((ema_weights(len(xs), span) @ np.asarray(xs, dtype=float))[-1])


def ref_rsi(closes: Sequence[float], period: int) -> float | None:
    if len(closes) < period + 1:
        return None
    d = np.diff(np.asarray(closes, dtype=float))
    gains = np.where(d > 0, d, 0.0)
    losses = np.where(d < 0, -d, 0.0)
    avg_gain = float(np.mean(gains[:period]))
    avg_loss = float(np.mean(losses[:period]))
    for g, lo in zip(gains[period:], losses[period:], strict=True):
        avg_gain = (avg_gain * (period - 1) + g) / period
        avg_loss = (avg_loss * (period - 1) + lo) / period
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def ref_macd(closes: Sequence[float], fast: int, slow: int, signal: int) -> tuple[float, float, float] | None:
    if len(closes) < slow + signal - 1:
        return None
    x = np.asarray(closes, dtype=float)
    n = len(x)
    line = ema_weights(n, fast) @ x - ema_weights(n, slow) @ x
    sig = ema_weights(n, signal) @ line
    return float(line[-1]), float(sig[-1]), float(line[-1] - sig[-1])


def ref_rolling(xs: Sequence[float], window: int) -> tuple[float, float] | None:
    if len(xs) < window:
        return None
    w = np.asarray(xs[-window:], dtype=float)
    return float(np.mean(w)), float(np.std(w))


def clamped_times(times: Sequence[int]) -> np.ndarray:
    """Event times as the indicators see them: never earlier than the previous one."""
    return np.maximum.accumulate(np.asarray(times, dtype=np.int64))


def ref_rate(times: Sequence[int], amounts: Sequence[float], t_query: int, tau_s: float) -> float:
    if not times:
        return 0.0
    t = clamped_times(times)
    tq = max(t_query, int(t[-1]))
    age_s = (tq - t).astype(float) / 1000.0
    return float(np.sum(np.asarray(amounts) * np.exp(-age_s / tau_s)) / tau_s)


def ref_time_ew(times: Sequence[int], xs: Sequence[float], tau_s: float) -> tuple[float, float]:
    """Explicit weighted mean / population variance over all points.

    Point i enters with a_i = 1 - exp(-dt_i / tau) (a_0 = 1) and then decays by
    exp(-elapsed / tau), so its weight now is a_i * exp(-(T - t_i) / tau); the
    weights sum to 1 (telescoping).
    """
    t = clamped_times(times)
    x = np.asarray(xs, dtype=float)
    a = np.ones(len(t))
    a[1:] = -np.expm1(-np.diff(t).astype(float) / 1000.0 / tau_s)
    w = a * np.exp(-(t[-1] - t).astype(float) / 1000.0 / tau_s)
    mean = float(np.sum(w * x))
    var = float(np.sum(w * (x - mean) ** 2))
    return mean, var


# ---------------------------------------------------------------------------
# Random data for the oracle tests.
# ---------------------------------------------------------------------------


def random_prices(seed: int, n: int) -> list[float]:
    """A positive random walk with flat stretches and jumps (exercises RSI's 0 / 100 branches)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 1.0, n)
    steps[rng.random(n) < 0.15] = 0.0
    steps[rng.random(n) < 0.03] *= 25.0
    prices = 100.0 + np.cumsum(steps)
    prices = np.abs(prices) + 1.0
    return [float(v) for v in prices]


def random_times(seed: int, n: int) -> list[int]:
    """Irregular ms timestamps: duplicates, ms/s/minute gaps, multi-day gaps, late arrivals."""
    rng = np.random.default_rng(seed)
    t = BASE_MS
    out = []
    for u in rng.random(n):
        if u < 0.2:
            gap = 0
        elif u < 0.55:
            gap = int(rng.integers(1, 1_000))
        elif u < 0.8:
            gap = int(rng.integers(1_000, 120_000))
        elif u < 0.88:
            gap = int(rng.integers(1, 4)) * DAY_MS + int(rng.integers(0, 1_000))
        else:
            gap = -int(rng.integers(1, 5_000))  # out of order
        t += gap
        out.append(t)
    return out


SEEDS = [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# Oracle tests: every prefix.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("span", [1, 2, 5, 26])
def test_ema_matches_reference_on_every_prefix(seed: int, span: int) -> None:
    xs = random_prices(seed, 150)
    xs[::7] = [-v for v in xs[::7]]  # mixed signs too
    ema = EMA(span)
    assert ema.value is None
    for i, x in enumerate(xs):
        ema.update(x)
        ref = ref_ema(xs[: i + 1], span)
        assert ema.count == i + 1
        assert close(ema.value, ref)
        assert close(ema.get(), ref if i + 1 >= span else None)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 2, 14])
def test_rsi_matches_reference_on_every_prefix(seed: int, period: int) -> None:
    closes = random_prices(seed, 200)
    rsi = WilderRSI(period)
    for i, c in enumerate(closes):
        rsi.update(c)
        assert close(rsi.get(), ref_rsi(closes[: i + 1], period)), i


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (1, 2, 1), (3, 10, 4), (5, 6, 20)])
def test_macd_matches_reference_on_every_prefix(seed: int, fast: int, slow: int, signal: int) -> None:
    closes = random_prices(seed, 150)
    macd = MACD(fast, slow, signal)
    for i, c in enumerate(closes):
        macd.update(c)
        got = macd.get()
        ref = ref_macd(closes[: i + 1], fast, slow, signal)
        if ref is None:
            assert got is None, i
        else:
            assert got is not None, i
            assert all(close(g, r) for g, r in zip(got, ref, strict=True)), (i, got, ref)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [1, 2, 7, 50])
def test_rolling_mean_std_matches_reference_on_every_prefix(seed: int, window: int) -> None:
    xs = random_prices(seed, 400)
    rolling = RollingMeanStd(window)
    for i, x in enumerate(xs):
        rolling.update(x)
        ref = ref_rolling(xs[: i + 1], window)
        assert rolling.count == i + 1
        assert rolling.full == (ref is not None)
        if ref is None:
            assert rolling.mean() is None
            assert rolling.std() is None
        else:
            assert close(rolling.mean(), ref[0]), i
            assert close(rolling.std(), ref[1]), i


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [0, 1, 5])
def test_lag_matches_reference_on_every_prefix(seed: int, n: int) -> None:
    xs = random_prices(seed, 60)
    lag = Lag(n)
    for i, x in enumerate(xs):
        lag.update(x)
        prefix = xs[: i + 1]
        assert lag.get() == (prefix[-1 - n] if len(prefix) > n else None)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau_s", [0.5, 5.0, 60.0, 3600.0])
def test_decaying_rate_matches_reference_on_every_prefix(seed: int, tau_s: float) -> None:
    times = random_times(seed, 250)
    amounts = [float(v) for v in np.random.default_rng(seed + 100).exponential(3.0, len(times))]
    rate = DecayingRate(tau_s)
    assert rate.value_at(BASE_MS) == 0.0
    for i, (t, amount) in enumerate(zip(times, amounts, strict=True)):
        rate.update(t, amount)
        assert rate.last_ms == int(clamped_times(times[: i + 1])[-1])
        last = rate.last_ms
        # At the last event, later (incl. days later), and earlier (clamped).
        for tq in (last, last + 1, last + 1_500, last + 37_000, last + 2 * DAY_MS, last - 5_000):
            ref = ref_rate(times[: i + 1], amounts[: i + 1], tq, tau_s)
            assert close(rate.value_at(tq), ref), (i, tq)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau_s", [0.5, 5.0, 60.0, 3600.0])
def test_time_ew_mean_var_matches_reference_on_every_prefix(seed: int, tau_s: float) -> None:
    times = random_times(seed, 250)
    xs = random_prices(seed + 100, len(times))
    ew = TimeEWMeanVar(tau_s)
    assert ew.mean is None
    assert ew.var is None
    assert ew.std() is None
    for i, (t, x) in enumerate(zip(times, xs, strict=True)):
        ew.update(t, x)
        mean, var = ref_time_ew(times[: i + 1], xs[: i + 1], tau_s)
        assert ew.count == i + 1
        assert ew.last_ms == int(clamped_times(times[: i + 1])[-1])
        assert close(ew.mean, mean), i
        assert close(ew.var, var), i
        assert close(ew.std(), math.sqrt(var)), i


# ---------------------------------------------------------------------------
# Specific semantics.
# ---------------------------------------------------------------------------


def test_rsi_flat_and_monotonic_series() -> None:
    flat = WilderRSI(3)
    up = WilderRSI(3)
    down = WilderRSI(3)
    for i in range(10):
        flat.update(5.0)
        up.update(5.0 + i)
        down.update(50.0 - i)
    assert flat.get() == 50.0
    assert up.get() == 100.0
    assert down.get() == 0.0


def test_time_ew_same_millisecond_burst_changes_nothing_but_count() -> None:
    ew = TimeEWMeanVar(tau_s=10.0)
    ew.update(BASE_MS, 100.0)
    ew.update(BASE_MS + 2_000, 101.0)
    before = (ew.mean, ew.var, ew.last_ms)
    for _ in range(1_000):
        ew.update(BASE_MS + 2_000, 1e6)  # a sweep of the book in one millisecond
    ew.update(BASE_MS + 1_000, 1e6)  # late arrival: same treatment
    assert (ew.mean, ew.var, ew.last_ms) == before
    assert ew.count == 1_003


def test_decaying_rate_clamps_late_events_and_survives_huge_gaps() -> None:
    rate = DecayingRate(tau_s=1.0)
    rate.update(BASE_MS, 2.0)
    rate.update(BASE_MS - 10_000, 3.0)  # late: counted at the last time, no decay
    assert rate.last_ms == BASE_MS
    assert rate.value_at(BASE_MS) == 5.0
    assert rate.value_at(BASE_MS - 60_000) == 5.0
    assert rate.value_at(BASE_MS + 365 * DAY_MS) == 0.0  # exp underflow, no error
    rate.update(BASE_MS + 365 * DAY_MS, 4.0)
    assert rate.value_at(BASE_MS + 365 * DAY_MS) == 4.0


def test_rolling_constant_window_has_zero_std() -> None:
    rolling = RollingMeanStd(5)
    for x in [1.0, 1e12, -3.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]:
        rolling.update(x)
    std = rolling.std()
    assert std is not None
    assert 0.0 <= std < 1e-15


def test_rolling_recovers_precision_after_a_huge_level_shift() -> None:
    # The window slides from values near 0 to values near 1e9: the running sums
    # were shifted for the old level, so they must be re-centred (early
    # recompute) instead of waiting for the periodic one.
    window = 512
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.normal(0.0, 1.0, 700), 1e9 + rng.normal(0.0, 0.01, 2 * window)])
    rolling = RollingMeanStd(window)
    values = [float(v) for v in xs]
    for i, x in enumerate(values):
        rolling.update(x)
        if i + 1 < window:
            continue
        win = xs[i + 1 - window : i + 1]
        ref_std = float(np.std(win - win[0]))  # centred: numpy's own mean is not exact at 1e9
        pure = i + 1 - window >= 700
        if pure and i + 1 - window - 700 >= window // 8:
            assert math.isclose(rolling.std() or 0.0, ref_std, rel_tol=1e-9), i
        else:
            # Any window: relative to its spread, or absolutely for the pure
            # window while the rate-limited recompute has not happened yet.
            assert math.isclose(rolling.std() or 0.0, ref_std, rel_tol=1e-6, abs_tol=1e-3), i


# ---------------------------------------------------------------------------
# Parameter validation and malformed states.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EMA(0), r"span must be >= 1, got 0"),
        (lambda: EMA(-3), r"span must be >= 1, got -3"),
        (lambda: EMA(2.5), r"span must be an int >= 1, got 2\.5"),  # type: ignore[arg-type]
        (lambda: EMA(True), r"span must be an int >= 1, got True"),
        (lambda: WilderRSI(0), r"period must be >= 1, got 0"),
        (lambda: MACD(0, 26, 9), r"fast must be >= 1, got 0"),
        (lambda: MACD(12, 26, 0), r"signal must be >= 1, got 0"),
        (lambda: MACD(12, 12, 9), r"fast must be < slow, got fast=12, slow=12"),
        (lambda: MACD(26, 12, 9), r"fast must be < slow, got fast=26, slow=12"),
        (lambda: RollingMeanStd(0), r"window must be >= 1, got 0"),
        (lambda: RollingMeanStd(None), r"window must be an int >= 1, got None"),  # type: ignore[arg-type]
        (lambda: Lag(-1), r"n must be >= 0, got -1"),
        (lambda: DecayingRate(0.0), r"tau_s must be a finite number > 0, got 0\.0"),
        (lambda: DecayingRate(-1.0), r"tau_s must be a finite number > 0, got -1\.0"),
        (lambda: DecayingRate(math.inf), r"tau_s must be a finite number > 0, got inf"),
        (lambda: TimeEWMeanVar(math.nan), r"tau_s must be a finite number > 0, got nan"),
        (lambda: TimeEWMeanVar("1"), r"tau_s must be a finite number > 0, got '1'"),  # type: ignore[arg-type]
    ],
)
def test_bad_params_raise_value_error(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integer_params_are_accepted_and_stored_as_int() -> None:
    ema = EMA(np.int64(5))  # type: ignore[arg-type]
    assert ema.span == 5
    assert type(ema.to_state()[0]) is int


@pytest.mark.parametrize(
    ("cls", "state"),
    [
        (EMA, [3, 0]),
        (EMA, [0, 0, None]),
        (WilderRSI, [14, 0, None, 0.0]),
        (MACD, [12, 26, 9, 0, 0.0, 0.0]),
        (MACD, [26, 12, 9, 0, 0.0, 0.0, 0.0]),
        (RollingMeanStd, [3, 2, 2, 0.0, 0.0, 0.0, 1.0]),
        (RollingMeanStd, []),
        (Lag, [2, 5, 1.0, 2.0]),
        (DecayingRate, [-1.0, 0, None, 0.0]),
        (TimeEWMeanVar, [1.0, 0, None, None]),
    ],
)
def test_malformed_state_raises_value_error(cls: Any, state: list[Any]) -> None:
    with pytest.raises(ValueError, match=r"must"):
        cls.from_state(state)


# ---------------------------------------------------------------------------
# Hypothesis properties.
# ---------------------------------------------------------------------------

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
big_values = st.floats(min_value=1e9 - 1.0, max_value=1e9 + 1.0, allow_nan=False)
series = st.lists(st.one_of(values, big_values, st.just(42.0)), max_size=120)
gaps_ms = st.one_of(
    st.just(0),
    st.integers(1, 1_000),
    st.integers(1_000, 10**6),
    st.integers(1, 5).map(lambda d: d * DAY_MS),
    st.integers(-5_000, -1),
)
taus = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False)


def timestamps(gaps: Sequence[int]) -> list[int]:
    out = []
    t = BASE_MS
    for g in gaps:
        t += g
        out.append(t)
    return out


timed_series = st.lists(st.tuples(gaps_ms, values), max_size=120).map(
    lambda steps: list(zip(timestamps([g for g, _ in steps]), [x for _, x in steps], strict=True))
)


@st.composite
def macd_params(draw: st.DrawFn) -> tuple[int, int, int]:
    fast = draw(st.integers(1, 15))
    slow = draw(st.integers(fast + 1, 30))
    return fast, slow, draw(st.integers(1, 12))


def observe(obj: Any) -> str:
    """Everything a caller can read, as an exact (repr-based) string."""
    if isinstance(obj, EMA):
        seen: tuple[Any, ...] = (obj.value, obj.get(), obj.count)
    elif isinstance(obj, WilderRSI | MACD | Lag):
        seen = (obj.get(), obj.count)
    elif isinstance(obj, RollingMeanStd):
        seen = (obj.mean(), obj.std(), obj.count, obj.full)
    elif isinstance(obj, DecayingRate):
        last = obj.last_ms if obj.last_ms is not None else BASE_MS
        seen = (obj.value_at(last), obj.value_at(last + 1_234), obj.count, obj.last_ms)
    else:
        seen = (obj.mean, obj.var, obj.std(), obj.count, obj.last_ms)
    return repr(seen)


def check_round_trip(make: Callable[[], Any], steps: Sequence[Any], split: int) -> None:
    """Round-trip through JSON after ``split`` steps; the rest must be bit-identical."""
    split = min(split, len(steps))
    plain = make()
    restored = make()
    for step in steps[:split]:
        plain.update(*step)
        restored.update(*step)
    restored = type(restored).from_state(json_round_trip(restored.to_state()))
    assert json.dumps(restored.to_state()) == json.dumps(plain.to_state())
    assert observe(restored) == observe(plain)
    for step in steps[split:]:
        plain.update(*step)
        restored.update(*step)
        assert observe(restored) == observe(plain)
    assert json.dumps(restored.to_state()) == json.dumps(plain.to_state())


@PROPS
@given(span=st.integers(1, 30), xs=series, split=st.integers(0, 120))
def test_ema_state_round_trip(span: int, xs: list[float], split: int) -> None:
    check_round_trip(lambda: EMA(span), [(x,) for x in xs], split)


@PROPS
@given(period=st.integers(1, 20), xs=series, split=st.integers(0, 120))
def test_rsi_state_round_trip(period: int, xs: list[float], split: int) -> None:
    check_round_trip(lambda: WilderRSI(period), [(x,) for x in xs], split)


@PROPS
@given(params=macd_params(), xs=series, split=st.integers(0, 120))
def test_macd_state_round_trip(params: tuple[int, int, int], xs: list[float], split: int) -> None:
    check_round_trip(lambda: MACD(*params), [(x,) for x in xs], split)


@PROPS
@given(window=st.integers(1, 40), xs=series, split=st.integers(0, 120))
def test_rolling_state_round_trip(window: int, xs: list[float], split: int) -> None:
    check_round_trip(lambda: RollingMeanStd(window), [(x,) for x in xs], split)


@PROPS
@given(n=st.integers(0, 10), xs=series, split=st.integers(0, 120))
def test_lag_state_round_trip(n: int, xs: list[float], split: int) -> None:
    check_round_trip(lambda: Lag(n), [(x,) for x in xs], split)


@PROPS
@given(tau_s=taus, steps=timed_series, split=st.integers(0, 120))
def test_decaying_rate_state_round_trip(tau_s: float, steps: list[tuple[int, float]], split: int) -> None:
    check_round_trip(lambda: DecayingRate(tau_s), [(t, abs(x)) for t, x in steps], split)


@PROPS
@given(tau_s=taus, steps=timed_series, split=st.integers(0, 120))
def test_time_ew_state_round_trip(tau_s: float, steps: list[tuple[int, float]], split: int) -> None:
    check_round_trip(lambda: TimeEWMeanVar(tau_s), steps, split)


@PROPS
@given(span=st.integers(1, 30), period=st.integers(1, 20), params=macd_params(), xs=series)
def test_bar_getters_are_none_exactly_during_warm_up(
    span: int, period: int, params: tuple[int, int, int], xs: list[float]
) -> None:
    fast, slow, signal = params
    ema, rsi, macd = EMA(span), WilderRSI(period), MACD(fast, slow, signal)
    rolling, lag = RollingMeanStd(span), Lag(period)

    def check(count: int) -> None:
        assert (ema.value is None) == (count == 0)
        assert (ema.get() is None) == (count < span)
        assert (rsi.get() is None) == (count < period + 1)
        assert (macd.get() is None) == (count < slow + signal - 1)
        assert (rolling.mean() is None) == (rolling.std() is None) == (count < span) == (not rolling.full)
        assert (lag.get() is None) == (count < period + 1)

    check(0)
    for i, x in enumerate(xs):
        for obj in (ema, rsi, macd, rolling, lag):
            obj.update(x)
        check(i + 1)


@PROPS
@given(tau_s=taus, steps=timed_series)
def test_time_getters_are_none_exactly_before_the_first_update(
    tau_s: float, steps: list[tuple[int, float]]
) -> None:
    ew = TimeEWMeanVar(tau_s)
    rate = DecayingRate(tau_s)
    assert ew.mean is None and ew.var is None and ew.std() is None and ew.last_ms is None
    assert rate.value_at(BASE_MS) == 0.0 and rate.last_ms is None
    for t, x in steps:
        ew.update(t, x)
        rate.update(t, abs(x))
        assert ew.mean is not None and ew.var is not None and ew.std() is not None
        assert ew.var >= 0.0
        assert rate.value_at(t) >= 0.0


@PROPS
@given(
    period=st.integers(1, 20),
    closes=st.lists(
        st.one_of(
            st.floats(min_value=1e-6, max_value=1e7, allow_nan=False),
            st.just(100.0),
            st.sampled_from([1e-300, 5e-324, 1e12]),
        ),
        max_size=150,
    ),
)
def test_rsi_is_within_0_and_100(period: int, closes: list[float]) -> None:
    rsi = WilderRSI(period)
    for c in closes:
        rsi.update(c)
        r = rsi.get()
        assert r is None or 0.0 <= r <= 100.0


@PROPS
@given(
    window=st.integers(1, 30),
    base=st.sampled_from([0.0, 1.0, 123.456, 1e9, -1e9, 1e12]),
    ulps=st.lists(st.integers(-3, 3), max_size=150),
)
def test_std_is_never_negative_on_near_constant_data(window: int, base: float, ulps: list[int]) -> None:
    # Values a few ulps apart (or identical): the case where E[x^2] - E[x]^2
    # style formulas round to a negative variance.
    step = math.ulp(base) if base else 1e-300
    rolling = RollingMeanStd(window)
    ew = TimeEWMeanVar(1.0)
    for i, k in enumerate(ulps):
        x = base + k * step
        rolling.update(x)
        ew.update(BASE_MS + 7 * i, x)
        std = rolling.std()
        assert std is None or 0.0 <= std <= 4 * step
        assert ew.var is not None and ew.var >= 0.0


@settings(PROPS, max_examples=8)
@given(
    seed=st.integers(0, 2**32 - 1),
    window=st.integers(2, 1_000),
    offset=st.sampled_from([1e9, -1e9, 1e12]),
    scale=st.sampled_from([1e-2, 1.0, 1e3]),
)
def test_rolling_is_stable_after_100k_updates(seed: int, window: int, offset: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    xs = offset + rng.normal(0.0, scale, 100_000)
    rolling = RollingMeanStd(window)
    for x in xs.tolist():
        rolling.update(x)
    last = xs[-window:]
    # Reference on the centred window: numpy's pairwise mean of raw 1e12-sized
    # values is itself only good to ~1e-4 absolute, which would dominate.
    centred = last - last[0]
    assert math.isclose(rolling.mean() or 0.0, float(np.mean(last)), rel_tol=1e-12)
    assert math.isclose(rolling.std() or 0.0, float(np.std(centred)), rel_tol=1e-9)
