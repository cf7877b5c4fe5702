"""Streaming technical indicators and event-time statistics.

Every class follows the same small protocol, in the style of ``river.stats``:

* ``update(...) -> None`` folds in one observation in O(1) (amortised) time
  with bounded memory;
* a getter (``get()``, ``mean()``, ...) returns ``None`` until the indicator is
  warmed up, so a caller can never mistake a half-initialised value for a real one;
* ``to_state()`` returns a compact JSON-serialisable list (numbers and ``None``)
  that includes the constructor parameters, and ``from_state(state)`` rebuilds
  the object exactly. JSON keeps Python ``int`` and ``float`` values bit-exact
  (floats are written with the shortest round-tripping ``repr``), so an object
  restored from ``json.loads(json.dumps(x.to_state()))`` continues with results
  that are bit-identical to the original.

This module is pure Python on purpose: it runs once per tick in the hot loop,
where float arithmetic on Python objects beats numpy scalar operations. Inputs
are expected to be finite floats (validated ticks are); they are not coerced,
to keep the per-update cost minimal.

Bar-based indicators (:class:`EMA`, :class:`WilderRSI`, :class:`MACD`,
:class:`RollingMeanStd`, :class:`Lag`) count updates; event-time ones
(:class:`DecayingRate`, :class:`TimeEWMeanVar`) use the exchange timestamps in
milliseconds and a time constant ``tau_s`` in seconds, so irregular trade
arrival is handled correctly.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from typing import Any, Self, SupportsFloat, SupportsIndex

__all__ = [
    "EMA",
    "MACD",
    "DecayingRate",
    "Lag",
    "RollingMeanStd",
    "State",
    "TimeEWMeanVar",
    "WilderRSI",
]

#: What ``to_state`` returns: a flat list of numbers and ``None``.
State = list[float | int | None]


# Constructor parameters are typed SupportsIndex / SupportsFloat rather than int / float: these
# checks accept numpy scalars and turn anything else into a ValueError, while compiled (mypyc,
# models._native) an ``int`` or ``float`` annotation would be enforced first, as a TypeError.
def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an int subclass, but ``EMA(span=True)`` is certainly a bug. ValueError
    # rather than TypeError: the contract is one exception type for any bad parameter.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")  # noqa: TRY004
    # int() first, so that numpy integers never leak into the JSON state (nor a numpy bool into
    # the comparison, which compiled code would refuse).
    number = int(value)
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return number


def _check_tau(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")  # noqa: TRY004
    tau = float(value)
    if not (math.isfinite(tau) and tau > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return tau


def _check_len(cls: type, state: list[Any], expected: int) -> None:
    if len(state) != expected:
        raise ValueError(f"{cls.__name__} state must have {expected} items, got {len(state)}")


def _check_head(cls: type, state: list[Any], n_params: int) -> None:
    # Params plus the update count must be present before anything else is read.
    if not isinstance(state, list) or len(state) < n_params + 1:
        size = len(state) if isinstance(state, list) else type(state).__name__
        raise ValueError(f"{cls.__name__} state must be a list of at least {n_params + 1} items, got {size}")


class EMA:
    """Bar exponential moving average, ``alpha = 2 / (span + 1)``.

    Seeded with the first value, then ``ema += alpha * (x - ema)``: the same
    recursion as pandas ``Series.ewm(span=span, adjust=False).mean()``.

    Parameters
    ----------
    span : int
        Span in updates, >= 1.

    Attributes
    ----------
    count : int
        Number of updates seen.

    Examples
    --------
    >>> ema = EMA(span=3)
    >>> for x in [1.0, 2.0, 3.0]:
    ...     ema.update(x)
    ...     print(ema.value, ema.get())
    1.0 None
    1.5 None
    2.25 2.25
    >>> EMA.from_state(ema.to_state()).get()
    2.25
    """

    __slots__ = ("_alpha", "_span", "_value", "count")

    def __init__(self, span: SupportsIndex) -> None:
        self._span = _check_int("span", span, 1)
        self._alpha = 2.0 / (self._span + 1)
        self._value: float | None = None
        self.count = 0

    @property
    def span(self) -> int:
        return self._span

    @property
    def value(self) -> float | None:
        """Current EMA, also during warm-up; ``None`` before the first update."""
        return self._value

    def update(self, x: float) -> None:
        value = self._value
        # ``v + a*(x - v)`` rather than ``(1-a)*v + a*x``: a constant input then
        # stays exactly constant instead of wobbling in the last bit.
        self._value = x if value is None else value + self._alpha * (x - value)
        self.count += 1

    def get(self) -> float | None:
        """EMA once ``span`` values have been seen, else ``None``.

        Before that the seed (first value) still carries a large weight.
        """
        return self._value if self.count >= self._span else None

    def to_state(self) -> State:
        """``[span, count, value]``."""
        return [self._span, self.count, self._value]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        _check_len(cls, state, 3)
        obj = cls(state[0])
        obj.count = state[1]
        obj._value = state[2]
        return obj


class WilderRSI:
    """Relative Strength Index with Wilder's smoothing, on closes.

    The first average gain / loss is the simple mean of the first ``period``
    close-to-close changes; afterwards ``avg = (avg * (period - 1) + x) / period``.
    ``RSI = 100 - 100 / (1 + avg_gain / avg_loss)``, with 100 when there were
    only gains and 50 when there was no movement at all.

    Parameters
    ----------
    period : int
        Smoothing period, >= 1.

    Attributes
    ----------
    count : int
        Number of closes seen (the number of changes is ``count - 1``).

    Examples
    --------
    >>> rsi = WilderRSI(period=2)
    >>> for close in [10.0, 11.0, 10.5]:
    ...     rsi.update(close)
    >>> rsi.get()  # avg gain 0.5, avg loss 0.25
    66.666...
    >>> rsi.update(12.0)  # gain (0.5 + 1.5) / 2 = 1.0, loss 0.25 / 2 = 0.125
    >>> round(rsi.get(), 4)
    88.8889
    """

    __slots__ = ("_gain", "_loss", "_p", "_period", "_prev", "_q", "count")

    def __init__(self, period: SupportsIndex = 14) -> None:
        self._period = _check_int("period", period, 1)
        self._p = float(self._period)
        self._q = float(self._period - 1)
        self._prev: float | None = None
        # Sums of the changes during warm-up, Wilder averages afterwards (saves a
        # second pair of slots and keeps the state short).
        self._gain = 0.0
        self._loss = 0.0
        self.count = 0

    @property
    def period(self) -> int:
        return self._period

    def update(self, close: float) -> None:
        prev = self._prev
        self._prev = close
        count = self.count + 1
        self.count = count
        if prev is None:
            return
        change = close - prev
        # Explicit branches rather than max(): no builtin call in the hot path.
        if change > 0.0:
            up = change
            down = 0.0
        elif change < 0.0:
            up = 0.0
            down = -change
        else:
            up = down = 0.0
        # count - 1 changes have been seen; the steady state is tested first.
        if count > self._period + 1:
            # Float copies of period / period - 1: same results as the ints, fewer conversions.
            p = self._p
            q = self._q
            self._gain = (self._gain * q + up) / p
            self._loss = (self._loss * q + down) / p
        elif count == self._period + 1:
            self._gain = (self._gain + up) / self._p
            self._loss = (self._loss + down) / self._p
        else:
            self._gain += up
            self._loss += down

    def get(self) -> float | None:
        """RSI in [0, 100] once ``period`` changes were seen, else ``None``."""
        if self.count <= self._period:
            return None
        gain = self._gain
        loss = self._loss
        if loss == 0.0:
            return 100.0 if gain > 0.0 else 50.0
        # Same value as 100 - 100 / (1 + gain/loss), but it cannot overflow for a
        # tiny loss and gain / (gain + loss) <= 1 holds in floats, so the result
        # never leaves [0, 100] by rounding.
        return 100.0 * gain / (gain + loss)

    def to_state(self) -> State:
        """``[period, count, prev_close, gain, loss]``.

        ``gain`` / ``loss`` are sums while ``count <= period`` and Wilder averages after.
        """
        return [self._period, self.count, self._prev, self._gain, self._loss]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        _check_len(cls, state, 5)
        obj = cls(state[0])
        obj.count = state[1]
        obj._prev = state[2]
        obj._gain = state[3]
        obj._loss = state[4]
        return obj


class MACD:
    """Moving Average Convergence Divergence.

    ``macd = EMA_fast - EMA_slow`` (both seeded with the first close, pandas
    ``adjust=False``), ``signal = EMA_signal(macd)`` and ``hist = macd - signal``.
    As in the usual pandas formulation the signal EMA is fed the macd line from
    the very first close (where it is 0). Values are only reported after
    ``slow + signal - 1`` closes, the classic MACD look-back.

    Parameters
    ----------
    fast : int
        Fast EMA span, >= 1 and < ``slow``.
    slow : int
        Slow EMA span.
    signal : int
        Signal EMA span, >= 1.

    Attributes
    ----------
    count : int
        Number of closes seen.

    Examples
    --------
    >>> macd = MACD(fast=2, slow=3, signal=2)
    >>> for close in [1.0, 2.0, 3.0]:
    ...     macd.update(close)
    >>> print(macd.get())  # warm-up: slow + signal - 1 = 4 closes
    None
    >>> macd.update(4.0)
    >>> [round(v, 6) for v in macd.get()]
    [0.393519, 0.342593, 0.050926]
    """

    __slots__ = (
        "_a_fast",
        "_a_signal",
        "_a_slow",
        "_ema_fast",
        "_ema_signal",
        "_ema_slow",
        "_fast",
        "_signal",
        "_slow",
        "count",
    )

    def __init__(self, fast: SupportsIndex = 12, slow: SupportsIndex = 26, signal: SupportsIndex = 9) -> None:
        self._fast = _check_int("fast", fast, 1)
        self._slow = _check_int("slow", slow, 1)
        self._signal = _check_int("signal", signal, 1)
        if self._fast >= self._slow:
            raise ValueError(f"fast must be < slow, got fast={fast}, slow={slow}")
        # The three EMAs are inlined rather than EMA objects: one method call
        # per update instead of four, in the hot loop.
        self._a_fast = 2.0 / (self._fast + 1)
        self._a_slow = 2.0 / (self._slow + 1)
        self._a_signal = 2.0 / (self._signal + 1)
        self._ema_fast = 0.0
        self._ema_slow = 0.0
        self._ema_signal = 0.0
        self.count = 0

    def update(self, close: float) -> None:
        if self.count == 0:
            self._ema_fast = close
            self._ema_slow = close
            self._ema_signal = 0.0  # the macd of the seed bar
        else:
            ema_fast = self._ema_fast + self._a_fast * (close - self._ema_fast)
            ema_slow = self._ema_slow + self._a_slow * (close - self._ema_slow)
            self._ema_fast = ema_fast
            self._ema_slow = ema_slow
            self._ema_signal += self._a_signal * ((ema_fast - ema_slow) - self._ema_signal)
        self.count += 1

    def get(self) -> tuple[float, float, float] | None:
        """``(macd, signal, hist)`` after ``slow + signal - 1`` closes, else ``None``."""
        if self.count < self._slow + self._signal - 1:
            return None
        macd = self._ema_fast - self._ema_slow
        return macd, self._ema_signal, macd - self._ema_signal

    def to_state(self) -> State:
        """``[fast, slow, signal, count, ema_fast, ema_slow, ema_signal]``."""
        return [
            self._fast,
            self._slow,
            self._signal,
            self.count,
            self._ema_fast,
            self._ema_slow,
            self._ema_signal,
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 3)
        _check_len(cls, state, 7)
        obj = cls(state[0], state[1], state[2])
        obj.count = state[3]
        obj._ema_fast = state[4]
        obj._ema_slow = state[5]
        obj._ema_signal = state[6]
        return obj


# Early re-centring of RollingMeanStd when (mean - shift)^2 exceeds this multiple
# of the variance: beyond it the shifted sums would have lost ~6 of 16 digits.
_RECENTRE_RATIO = 1e6


class RollingMeanStd:
    """Mean and population standard deviation (ddof=0) of the last ``window`` values.

    Numerics: the ring keeps the raw values, and running sums ``s1 = sum(x - k)``
    and ``s2 = sum((x - k)**2)`` are kept relative to a shift ``k`` (the window
    mean at the last recompute). The shift is what makes prices like
    ``1e9 + noise`` safe: the naive ``E[x^2] - E[x]^2`` would cancel away every
    digit of the noise. Every ``window`` updates the sums are recomputed exactly
    from the ring (``math.fsum``), so rounding drift cannot accumulate. If the
    data moves so far from ``k`` that the sums lose precision (a level shift of
    many orders of magnitude), the recompute happens early, but at most once per
    ``window // 8`` updates so the cost stays amortised O(1).

    Parameters
    ----------
    window : int
        Number of values, >= 1.

    Attributes
    ----------
    count : int
        Total number of updates seen (not capped at ``window``).

    Examples
    --------
    >>> rolling = RollingMeanStd(window=3)
    >>> for x in [1.0, 2.0, 3.0, 10.0]:
    ...     rolling.update(x)
    ...     print(rolling.full, rolling.mean())
    False None
    False None
    True 2.0
    True 5.0
    >>> rolling.std()  # of [2, 3, 10]
    3.559...
    """

    __slots__ = ("_min_gap", "_pos", "_ring", "_s1", "_s2", "_shift", "_since", "_window", "count")

    def __init__(self, window: SupportsIndex) -> None:
        self._window = _check_int("window", window, 1)
        self._ring: list[float] = [0.0] * self._window
        self._pos = 0  # next slot to write = oldest value once full
        # The shift starts at 0; the first exact recompute happens when the
        # window fills, before any value is reported.
        self._shift = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._since = 0  # updates since the last exact recompute
        self._min_gap = max(1, self._window // 8)
        self.count = 0

    @property
    def window(self) -> int:
        return self._window

    @property
    def full(self) -> bool:
        """Whether ``window`` values have been seen."""
        return self.count >= self._window

    def update(self, x: float) -> None:
        # Locals instead of repeated slot reads: this is the hottest method here.
        w = self._window
        ring = self._ring
        pos = self._pos
        shift = self._shift
        count = self.count
        d_new = x - shift
        if count >= w:
            d_old = ring[pos] - shift
            s1 = self._s1 + (d_new - d_old)
            # One rounding instead of the two of d_new**2 - d_old**2.
            s2 = self._s2 + (d_new - d_old) * (d_new + d_old)
        else:
            s1 = self._s1 + d_new
            s2 = self._s2 + d_new * d_new
        self._s1 = s1
        self._s2 = s2
        ring[pos] = x
        pos += 1
        self._pos = 0 if pos == w else pos
        count += 1
        self.count = count
        since = self._since + 1
        self._since = since
        if since >= w:
            self._recompute()
        elif since >= self._min_gap and count >= w:
            m1 = s1 / w
            m1_sq = m1 * m1
            if m1_sq > _RECENTRE_RATIO * (s2 / w - m1_sq):
                self._recompute()

    def _recompute(self) -> None:
        # Exact (correctly rounded) sums from the ring; fsum is order-independent,
        # which is also why the state can store the ring oldest-first.
        values = self._ring if self.count >= self._window else self._ring[: self.count]
        n = len(values)
        shift = math.fsum(values) / n
        self._shift = shift
        devs = [x - shift for x in values]
        self._s1 = math.fsum(devs)
        self._s2 = math.fsum([d * d for d in devs])
        self._since = 0

    def mean(self) -> float | None:
        """Mean of the window, ``None`` until it is full."""
        if self.count < self._window:
            return None
        return self._shift + self._s1 / self._window

    def std(self) -> float | None:
        """Population std (ddof=0) of the window, ``None`` until it is full."""
        if self.count < self._window:
            return None
        m1 = self._s1 / self._window
        var = self._s2 / self._window - m1 * m1
        # A constant window can round to a tiny negative variance.
        return math.sqrt(var) if var > 0.0 else 0.0

    def _values(self) -> list[float]:
        """Window contents, oldest first."""
        if self.count < self._window:
            return self._ring[: self.count]
        return self._ring[self._pos :] + self._ring[: self._pos]

    def to_state(self) -> State:
        """``[window, count, since, shift, s1, s2, *values_oldest_first]``."""
        return [self._window, self.count, self._since, self._shift, self._s1, self._s2, *self._values()]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        obj = cls(state[0])
        count = state[1]
        _check_len(cls, state, 6 + min(count, obj._window))
        values = state[6:]
        obj.count = count
        obj._since = state[2]
        obj._shift = state[3]
        obj._s1 = state[4]
        obj._s2 = state[5]
        # Stored oldest-first, so the write position restarts after the last one.
        obj._ring[: len(values)] = values
        obj._pos = len(values) % obj._window
        return obj


class Lag:
    """The value seen exactly ``n`` updates before the latest one.

    Parameters
    ----------
    n : int
        Lag in updates, >= 0 (``Lag(0)`` returns the latest value).

    Attributes
    ----------
    count : int
        Number of updates seen.

    Examples
    --------
    >>> lag = Lag(2)
    >>> for x in [1.0, 2.0, 3.0, 4.0]:
    ...     lag.update(x)
    ...     print(lag.get())
    None
    None
    1.0
    2.0
    """

    __slots__ = ("_buf", "_n", "count")

    def __init__(self, n: SupportsIndex) -> None:
        self._n = _check_int("n", n, 0)
        # A bounded deque drops the oldest value on append: O(1), and [0] is O(1).
        self._buf: deque[float] = deque(maxlen=self._n + 1)
        self.count = 0

    @property
    def n(self) -> int:
        return self._n

    def update(self, x: float) -> None:
        self._buf.append(x)
        self.count += 1

    def get(self) -> float | None:
        """The lagged value, ``None`` until ``n + 1`` values have been seen."""
        buf = self._buf
        return buf[0] if len(buf) > self._n else None

    def to_state(self) -> State:
        """``[n, count, *values_oldest_first]``."""
        return [self._n, self.count, *self._buf]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        obj = cls(state[0])
        count = state[1]
        _check_len(cls, state, 2 + min(count, obj._n + 1))
        obj.count = count
        obj._buf.extend(state[2:])
        return obj


class DecayingRate:
    """Exponentially decaying event rate in event time, for irregular events.

    ``value_at(t) = sum_i amount_i * exp(-(t - t_i) / tau) / tau`` over the
    events seen so far, in amount per second (e.g. traded quantity per second
    when ``amount`` is the trade size, trades per second when it is 1). Only the
    decayed sum at the last event time is stored, so memory is O(1).

    Time never runs backwards: an update or query earlier than the last update
    time is treated as happening at the last update time (late trades still
    count, at full weight). Long gaps are fine: ``exp`` underflows to 0.

    Parameters
    ----------
    tau_s : float
        Time constant in seconds, finite and > 0.

    Attributes
    ----------
    last_ms : int or None
        Latest update time in ms (``None`` before the first update).
    count : int
        Number of updates seen.

    Examples
    --------
    >>> rate = DecayingRate(tau_s=10.0)
    >>> rate.value_at(0)
    0.0
    >>> rate.update(1_000, 5.0)
    >>> rate.update(1_000, 5.0)
    >>> rate.value_at(1_000)  # 10 units / 10 s
    1.0
    >>> rate.value_at(11_000)  # one tau later: 1/e of it
    0.36787944...
    >>> rate.value_at(500)  # before the last update: clamped, no backwards decay
    1.0
    """

    __slots__ = ("_level", "_tau_ms", "_tau_s", "count", "last_ms")

    def __init__(self, tau_s: SupportsFloat) -> None:
        self._tau_s = _check_tau("tau_s", tau_s)
        self._tau_ms = self._tau_s * 1000.0
        # sum_i amount_i * exp(-(last_ms - t_i) / tau): the rate times tau at last_ms.
        self._level = 0.0
        self.last_ms: int | None = None
        self.count = 0

    @property
    def tau_s(self) -> float:
        return self._tau_s

    def update(self, t_ms: int, amount: float) -> None:
        last = self.last_ms
        if last is None:
            self._level = amount
            self.last_ms = t_ms
        elif t_ms > last:
            self._level = self._level * math.exp((last - t_ms) / self._tau_ms) + amount
            self.last_ms = t_ms
        else:
            self._level += amount
        self.count += 1

    def update_value(self, t_ms: int, amount: float) -> float:
        """``update(t_ms, amount)`` then ``value_at(t_ms)``, in one call (the per-tick hot path).

        After the update ``last_ms >= t_ms``, so ``value_at(t_ms)`` is exactly ``level / tau_s``:
        the result is bit-identical to the two calls.
        """
        last = self.last_ms
        if last is None:
            self._level = level = amount
            self.last_ms = t_ms
        elif t_ms > last:
            self._level = level = self._level * math.exp((last - t_ms) / self._tau_ms) + amount
            self.last_ms = t_ms
        else:
            self._level = level = self._level + amount
        self.count += 1
        return level / self._tau_s

    def value_at(self, t_ms: int) -> float:
        """Rate (amount per second) at ``t_ms``; 0.0 before any update."""
        last = self.last_ms
        if last is None:
            return 0.0
        if t_ms <= last:
            return self._level / self._tau_s
        return self._level * math.exp((last - t_ms) / self._tau_ms) / self._tau_s

    def to_state(self) -> State:
        """``[tau_s, count, last_ms, level]``."""
        return [self._tau_s, self.count, self.last_ms, self._level]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        _check_len(cls, state, 4)
        obj = cls(state[0])
        obj.count = state[1]
        obj.last_ms = state[2]
        obj._level = state[3]
        return obj


class TimeEWMeanVar:
    """Event-time exponentially weighted mean and variance of an irregular series.

    The first update sets ``mean = x`` and ``var = 0``. Each later update with
    ``dt = max(0, t_ms - last_ms) / 1000`` seconds uses
    ``a = 1 - exp(-dt / tau_s)``, ``diff = x - mean``, ``incr = a * diff``,
    ``mean += incr`` and ``var = (1 - a) * (var + diff * incr)``, the exact
    incremental form of the weighted variance of all points seen, with weights
    that decay with elapsed time rather than with the number of points.

    An update in the same millisecond as the previous one (``dt = 0``, so
    ``a = 0``) changes nothing but ``count``. This is intended: weight comes
    from elapsed time, so a burst of same-millisecond trades (one aggressive
    order sweeping the book) cannot drag the baseline. A timestamp earlier than
    ``last_ms`` is treated the same way, and ``last_ms`` never moves backwards.

    Parameters
    ----------
    tau_s : float
        Time constant in seconds, finite and > 0.

    Attributes
    ----------
    mean : float or None
        Weighted mean, ``None`` before the first update.
    var : float or None
        Weighted population variance (>= 0), ``None`` before the first update.
    count : int
        Number of updates seen (including the no-op same-millisecond ones).
    last_ms : int or None
        Latest update time in ms.

    Examples
    --------
    >>> ew = TimeEWMeanVar(tau_s=1.0)
    >>> ew.update(0, 10.0)
    >>> ew.update(0, 99.0)  # same millisecond: ignored on purpose
    >>> ew.mean, ew.var, ew.count
    (10.0, 0.0, 2)
    >>> ew.update(1_000, 20.0)  # one tau later: a = 1 - 1/e
    >>> ew.mean
    16.3212...
    >>> ew.std()
    4.8222...
    """

    __slots__ = ("_tau_ms", "_tau_s", "count", "last_ms", "mean", "var")

    def __init__(self, tau_s: SupportsFloat) -> None:
        self._tau_s = _check_tau("tau_s", tau_s)
        self._tau_ms = self._tau_s * 1000.0
        self.mean: float | None = None
        self.var: float | None = None
        self.count = 0
        self.last_ms: int | None = None

    @property
    def tau_s(self) -> float:
        return self._tau_s

    def update(self, t_ms: int, x: float) -> None:
        self.count += 1
        mean = self.mean
        var = self.var
        last = self.last_ms
        if mean is None or var is None or last is None:
            self.mean = x
            self.var = 0.0
            self.last_ms = t_ms
            return
        if t_ms <= last:
            return  # dt = 0 -> a = 0: see the class docstring
        z = (t_ms - last) / self._tau_ms
        # -expm1 keeps a accurate for dt << tau, and exp() keeps 1 - a accurate
        # for dt >> tau, where 1 - a itself would be pure rounding error.
        a = -math.expm1(-z)
        diff = x - mean
        incr = a * diff
        self.mean = mean + incr
        self.var = math.exp(-z) * (var + diff * incr)
        self.last_ms = t_ms

    def std(self) -> float | None:
        """``sqrt(var)``, ``None`` before the first update."""
        # var is a product/sum of non-negative terms, so it cannot go negative.
        return None if self.var is None else math.sqrt(self.var)

    def to_state(self) -> State:
        """``[tau_s, count, last_ms, mean, var]``."""
        return [self._tau_s, self.count, self.last_ms, self.mean, self.var]

    @classmethod
    def from_state(cls, state: list[Any]) -> Self:
        _check_head(cls, state, 1)
        _check_len(cls, state, 5)
        obj = cls(state[0])
        obj.count = state[1]
        obj.last_ms = state[2]
        obj.mean = state[3]
        obj.var = state[4]
        return obj
