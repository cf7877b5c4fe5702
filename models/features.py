"""Per-symbol rolling features, updated once per tick in event time.

A :class:`FeatureEngine` holds one symbol's indicator state. ``update(tick)`` costs O(1)
and returns that tick's :class:`Features`. Everything is driven by the tick timestamps,
never the wall clock, so the same ticks always give the same features.

Two clocks are used on purpose:

* **Bars** (``bar_seconds``, default 10 s, event time) feed the classic technical
  indicators, which are defined on closes: RSI(14), MACD(12, 26, 9), Bollinger(20, 2),
  price / SMA(20), volatility of bar log-returns, momentum, 1-minute price change.
* **Continuous-time decaying rates** (event time, irregular) give the microstructure that
  manipulation shows (La Morgia et al. 2020): trade rate, volume rate and same-millisecond
  ("rush order") rate over ~1 minute against a ~1 hour baseline, and the taker buy/sell
  imbalance; trade and volume rates also over ~10 minutes against the same baseline, for
  bursts on coins whose minute holds too few trades to tell.
* **Stale price**: ``flat_trades`` counts consecutive trades at an unchanged price, and
  ``flat_surprise`` says how rare a run that long is *for this symbol*: with ``q`` the
  symbol's share of trades that repeat the previous price (over ~1 hour, with one pseudo
  repeat and one pseudo change) and ``R`` its trades per day, runs of at least ``n`` repeats
  start about ``R (1 - q) q^n`` times a day if repeats were independent, so
  ``flat_surprise = -ln(R (1 - q) q^n)`` (e-folds below once a day). Twenty flat trades are
  ordinary on a coin whose price rarely moves and extraordinary on BTC.

Gaps. A gap of up to ``fill_gap_s`` is filled with flat bars (no trade = no price change,
which is what a bar chart shows). A longer gap (``max_gap_s``) means the short-term
state describes a market that no longer exists: the bar indicators are reset and
``warming_up`` is true again for ``warmup_s`` so detectors stay quiet while they refill.
The rate baselines are bias-corrected for the time they have been running, so a symbol
that resumes after hours does not look like a volume spike against an empty baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from models._fastinit import field_values
from models.indicators import EMA, MACD, DecayingRate, Lag, RollingMeanStd, WilderRSI
from models.ticks import Tick

# Final: the compiled core reads them as constants, not from the module's dict on every tick.
SCHEMA_VERSION: Final = 2
SAME_MS_PRIOR_TRADES: Final = 10.0
_MS_PER_DAY: Final = 86_400_000
# 1970-01-01 was a Thursday; ISO weekday numbering Monday=0.
_EPOCH_WEEKDAY: Final = 3
#: The bar indicators' values (_bar_values): lag 1m, lag momentum, bands mean and std, MACD, returns'
#: std, RSI. Typed item by item so that the compiled update does its arithmetic on C floats.
BarValues = tuple[float | None, float | None, float | None, float | None, tuple[float, float, float] | None,
                  float | None, float | None]

#: Feature names in the order of :meth:`Features.values`.
FEATURE_NAMES: tuple[str, ...] = (
    "price_change_pct",
    "volume_change_pct",
    "rsi",
    "macd",
    "macd_hist",
    "bollinger_position",
    "moving_avg_ratio",
    "volatility",
    "momentum",
    "hour_of_day",
    "day_of_week",
    "trade_rate",
    "trade_rate_ratio",
    "volume_ratio",
    "buy_sell_imbalance",
    "same_ms_share",
    "flat_trades",
    "flat_surprise",
    "trade_rate_ratio_medium",
    "volume_ratio_medium",
)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Window lengths of the feature engine (all event time)."""

    bar_seconds: float = 10.0
    fast_tau_s: float = 60.0
    slow_tau_s: float = 3600.0
    fill_gap_s: float = 300.0
    max_gap_s: float = 900.0
    warmup_s: float = 600.0
    # The medium window (~10 minutes) sees a burst that lasts minutes on a coin that trades a few
    # times a minute or less, where one minute holds too few trades to tell a burst from chance.
    medium_tau_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("bar_seconds", "fast_tau_s", "slow_tau_s", "warmup_s", "medium_tau_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.fast_tau_s >= self.slow_tau_s:
            raise ValueError(f"fast_tau_s ({self.fast_tau_s}) must be < slow_tau_s ({self.slow_tau_s})")
        if not self.bar_seconds <= self.fill_gap_s <= self.max_gap_s:
            raise ValueError("need bar_seconds <= fill_gap_s <= max_gap_s")

    def __reduce__(self) -> tuple[type[FeatureConfig], tuple[Any, ...]]:
        return FeatureConfig, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


@dataclass(slots=True)
class Features:
    """Features of one tick. Indicator values are ``nan`` until their window has filled.

    A value: never changed once built. Not ``frozen``: a frozen class cannot have the
    compiled constructor below (its generated ``__setattr__`` refuses the interpreted one).
    """

    symbol: str
    timestamp: int
    price: float
    warming_up: bool
    price_change_pct: float
    volume_change_pct: float
    rsi: float
    macd: float
    macd_hist: float
    bollinger_position: float
    moving_avg_ratio: float
    volatility: float
    momentum: float
    hour_of_day: float
    day_of_week: float
    trade_rate: float
    trade_rate_ratio: float
    volume_ratio: float
    buy_sell_imbalance: float
    same_ms_share: float
    flat_trades: float
    flat_surprise: float
    trade_rate_ratio_medium: float
    volume_ratio_medium: float

    # Written out, not generated: mypyc compiles this one to C, while the ``__init__`` that
    # ``dataclasses`` generates stays interpreted Python (mypyc issue 817) and cost 3.5 us a tick.
    def __init__(  # noqa: PLR0913 - one parameter per field, as dataclasses would generate
        self, symbol: str, timestamp: int, price: float, warming_up: bool, price_change_pct: float,
        volume_change_pct: float, rsi: float, macd: float, macd_hist: float, bollinger_position: float,
        moving_avg_ratio: float, volatility: float, momentum: float, hour_of_day: float, day_of_week: float,
        trade_rate: float, trade_rate_ratio: float, volume_ratio: float, buy_sell_imbalance: float,
        same_ms_share: float, flat_trades: float, flat_surprise: float, trade_rate_ratio_medium: float,
        volume_ratio_medium: float,
    ) -> None:
        self.symbol = symbol
        self.timestamp = timestamp
        self.price = price
        self.warming_up = warming_up
        self.price_change_pct = price_change_pct
        self.volume_change_pct = volume_change_pct
        self.rsi = rsi
        self.macd = macd
        self.macd_hist = macd_hist
        self.bollinger_position = bollinger_position
        self.moving_avg_ratio = moving_avg_ratio
        self.volatility = volatility
        self.momentum = momentum
        self.hour_of_day = hour_of_day
        self.day_of_week = day_of_week
        self.trade_rate = trade_rate
        self.trade_rate_ratio = trade_rate_ratio
        self.volume_ratio = volume_ratio
        self.buy_sell_imbalance = buy_sell_imbalance
        self.same_ms_share = same_ms_share
        self.flat_trades = flat_trades
        self.flat_surprise = flat_surprise
        self.trade_rate_ratio_medium = trade_rate_ratio_medium
        self.volume_ratio_medium = volume_ratio_medium

    def values(self) -> tuple[float, ...]:
        """Feature values in :data:`FEATURE_NAMES` order."""
        return tuple(getattr(self, name) for name in FEATURE_NAMES)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in FEATURE_NAMES}

    def __reduce__(self) -> tuple[type[Features], tuple[Any, ...]]:
        return Features, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


def _cover(running_s: float, tau_s: float) -> float:
    """Share of its full weight an exponential average of time constant tau_s holds after running_s.

    ``max(1 - e^{-T/tau}, 1e-3)``, written as a conditional (same value, no builtin call).
    """
    c = 1.0 - math.exp(-running_s / tau_s)
    return 1e-3 if 1e-3 > c else c


class FeatureEngine:
    """Rolling features of one symbol.

    Examples
    --------
    >>> eng = FeatureEngine("BTCUSDT")
    >>> f = eng.update(Tick("BTCUSDT", 100.0, 1.0, 1_700_000_000_000, "buy"))
    >>> f.warming_up, f.hour_of_day, f.buy_sell_imbalance
    (True, 22.0, 1.0)
    >>> FeatureEngine.from_state("BTCUSDT", eng.to_state()).to_state() == eng.to_state()
    True
    """

    def __init__(self, symbol: str, config: FeatureConfig | None = None) -> None:
        self.symbol = symbol
        self.config = config or FeatureConfig()
        self.last_ms: int | None = None
        self.started_ms: int | None = None  # start of the current warm-up (first tick or after a long gap)
        self.rates_started_ms: int | None = None
        self.bar_index: int | None = None
        self.bar_close = math.nan
        self.last_price = math.nan
        self.flat_trades = 0  # consecutive trades at an unchanged price (a stale feed keeps it growing)
        self.bands_last = math.nan  # previous bar close, for bar log-returns
        self._new_bar_state()
        self._new_rates()

    def _new_rates(self) -> None:
        fast, slow = self.config.fast_tau_s, self.config.slow_tau_s
        self.trades_fast, self.trades_slow = DecayingRate(fast), DecayingRate(slow)
        self.volume_fast, self.volume_slow = DecayingRate(fast), DecayingRate(slow)
        self.buys_fast, self.sells_fast = DecayingRate(fast), DecayingRate(fast)
        self.same_ms_fast = DecayingRate(fast)
        self.repeats_slow = DecayingRate(slow)  # trades at the previous trade's price
        medium = self.config.medium_tau_s
        self.trades_medium, self.volume_medium = DecayingRate(medium), DecayingRate(medium)

    def _new_bar_state(self) -> None:
        self._bars: BarValues | None = None  # cached _bar_values(), None when stale
        self.rsi = WilderRSI(14)
        self.macd = MACD(12, 26, 9)
        self.bands = RollingMeanStd(20)
        self.returns = RollingMeanStd(30)
        self.lag_1m = Lag(max(1, round(60 / self.config.bar_seconds) - 1))
        self.lag_momentum = Lag(9)
        self.ema_close = EMA(20)  # keeps a smoothed level for the explanation of a move

    # --- bars ---------------------------------------------------------------------------------
    def _push_close(self, close: float) -> None:
        last = self.bands_last
        if not math.isnan(last) and last > 0:
            self.returns.update(math.log(close / last))
        self.bands_last = close
        self.rsi.update(close)
        self.macd.update(close)
        self.bands.update(close)
        self.lag_1m.update(close)
        self.lag_momentum.update(close)
        self.ema_close.update(close)
        self._bars = None

    def _roll_bars(self, bar: int, ts: int) -> None:
        """Close the bars between the last tick and this one; reset after a long gap."""
        if self.bar_index is None:
            self.bar_index = bar
            return
        if bar <= self.bar_index:
            return
        gap_s = (ts - (self.last_ms or ts)) / 1000.0
        if gap_s > self.config.max_gap_s:
            # The market before the gap no longer exists: restart the bars and the rates (the
            # rates' bias correction then measures from the resume, as after the first tick).
            self._new_bar_state()
            self._new_rates()
            self.bands_last = math.nan
            self.started_ms = ts
            self.rates_started_ms = ts
            self.bar_index = bar
            return
        self._push_close(self.bar_close)
        empty = bar - self.bar_index - 1
        # Flat bars for a short gap; capped so one update stays O(1) (the longest window is 35 bars).
        for _ in range(min(empty, 40, int(self.config.fill_gap_s / self.config.bar_seconds))):
            self._push_close(self.bar_close)
        self.bar_index = bar

    # --- per tick -----------------------------------------------------------------------------
    def update(self, tick: Tick) -> Features:
        """Fold one tick in and return its features. Ticks older than the last one count as simultaneous.

        This is the per-tick hot path (called once per tick by the pipeline), so it is written
        flat: attributes are read once into locals, the rates return their value from the same
        call that updates them, and the bar indicators' getters are cached between bar closes.
        Every float expression is the one of the straightforward version, in the same order,
        so the features are bit-identical to it (the golden tests compare them).
        """
        cfg = self.config
        tick_ts = tick.timestamp
        last_ms = self.last_ms
        # max(tick_ts, last_ms) without the builtin call (max keeps the first of equal values).
        ts = tick_ts if last_ms is None or tick_ts >= last_ms else last_ms
        if self.started_ms is None:
            self.started_ms = ts
            self.rates_started_ms = ts
        same_ms = last_ms == tick_ts
        bar = int(ts // (cfg.bar_seconds * 1000))
        bar_index = self.bar_index
        if bar_index is None:
            self.bar_index = bar
        elif bar > bar_index:  # most ticks fall in the current bar: no call then
            self._roll_bars(bar, ts)

        price, qty = tick.price, tick.quantity
        repeat = price == self.last_price
        flat = self.flat_trades = self.flat_trades + 1 if repeat else 0
        # Rates are read after _roll_bars, which replaces them after a long gap.
        repeats_slow = self.repeats_slow
        if repeat:
            repeats_slow.update(ts, 1.0)
        self.last_price = price
        self.bar_close = price
        self.last_ms = ts

        trades_fast, trades_slow = self.trades_fast, self.trades_slow
        volume_fast, volume_slow = self.volume_fast, self.volume_slow
        # update_value(ts, x) == update(ts, x) then value_at(ts), bit for bit.
        trades_f_raw = trades_fast.update_value(ts, 1.0)
        trades_s_raw = trades_slow.update_value(ts, 1.0)
        vol_f_raw = volume_fast.update_value(ts, qty)
        vol_s_raw = volume_slow.update_value(ts, qty)
        trades_m_raw = self.trades_medium.update_value(ts, 1.0)
        vol_m_raw = self.volume_medium.update_value(ts, qty)
        side = tick.side
        if side == "buy":
            buys = self.buys_fast.update_value(ts, qty)
            sells = self.sells_fast.value_at(ts)
        elif side == "sell":
            buys = self.buys_fast.value_at(ts)
            sells = self.sells_fast.update_value(ts, qty)
        else:
            buys = self.buys_fast.value_at(ts)
            sells = self.sells_fast.value_at(ts)
        same = self.same_ms_fast.update_value(ts, 1.0) if same_ms else self.same_ms_fast.value_at(ts)

        # Fast and slow rates, each corrected for the time it has been running: an exponential
        # average that started T seconds ago holds only (1 - e^{-T/tau}) of its full weight;
        # dividing by that removes the cold-start bias (as Adam does). The cover depends only on
        # tau, so it is computed once per distinct tau (the trade and volume rates share them).
        running_s = (ts - (self.rates_started_ms or ts)) / 1000.0
        if running_s > 0:
            tau_tf, tau_ts = trades_fast.tau_s, trades_slow.tau_s
            tau_vf, tau_vs = volume_fast.tau_s, volume_slow.tau_s
            cover_tf = _cover(running_s, tau_tf)
            cover_ts = _cover(running_s, tau_ts)
            cover_vf = cover_tf if tau_vf == tau_tf else _cover(running_s, tau_vf)
            cover_vs = cover_ts if tau_vs == tau_ts else _cover(running_s, tau_vs)
            trades_f = trades_f_raw / cover_tf
            trades_s = trades_s_raw / cover_ts
            vol_f = vol_f_raw / cover_vf
            vol_s = vol_s_raw / cover_vs
            cover_m = _cover(running_s, self.trades_medium.tau_s)  # the volume's medium tau is the same
            trades_m = trades_m_raw / cover_m
            vol_m = vol_m_raw / cover_m
        else:  # cover 1.0: x / 1.0 is exactly x
            trades_f, trades_s, vol_f, vol_s = trades_f_raw, trades_s_raw, vol_f_raw, vol_s_raw
            trades_m, vol_m = trades_m_raw, vol_m_raw

        # Repeat share over the slow window (the same decay, so the cold-start cover cancels).
        prior = 1.0 / cfg.slow_tau_s
        repeats = repeats_slow.value_at(ts)
        q = (repeats + prior) / (trades_s_raw + 2.0 * prior)
        q = 1e-3 if q < 1e-3 else q  # min(max(q, 1e-3), 1 - 1e-3) without the builtin calls
        q = 1.0 - 1e-3 if q > 1.0 - 1e-3 else q

        bars = self._bars
        if bars is None:
            bars = self._bars = self._bar_values()
        lag, mom, mean, std, macd, vol, rsi = bars
        day = ts // _MS_PER_DAY
        # Positional, in field order: one C call when compiled (see Features.__init__).
        return Features(
            self.symbol,
            tick_ts,
            price,
            ts - (self.started_ms or ts) < cfg.warmup_s * 1000,
            # price_change_pct
            math.nan if lag is None else 100.0 * (price / lag - 1.0),
            # volume_change_pct
            100.0 * (vol_f / vol_s - 1.0) if vol_s > 0 else math.nan,
            # rsi
            math.nan if rsi is None else rsi,
            # macd, macd_hist
            math.nan if macd is None else 100.0 * macd[0] / price,
            math.nan if macd is None else 100.0 * macd[2] / price,
            # bollinger_position
            math.nan if mean is None or std is None else (price - mean) / (2.0 * std) if std > 0 else 0.0,
            # moving_avg_ratio: the shifted rolling mean of a price that collapsed by many orders of
            # magnitude within the window can round to 0 or below: no ratio then, rather than a crash
            # on a valid tick.
            math.nan if mean is None or mean <= 0.0 else price / mean,
            # volatility, momentum
            math.nan if vol is None else 100.0 * vol,
            math.nan if mom is None else 100.0 * (price / mom - 1.0),
            # hour_of_day, day_of_week
            float((ts % _MS_PER_DAY) // 3_600_000),
            float((day + _EPOCH_WEEKDAY) % 7),
            # trade_rate, trade_rate_ratio, volume_ratio
            trades_f,
            math.log((trades_f + 1e-9) / (trades_s + 1e-9)),
            math.log((vol_f + 1e-12) / (vol_s + 1e-12)),
            # buy_sell_imbalance
            (buys - sells) / (buys + sells) if buys + sells > 0 else 0.0,
            # same_ms_share: share of the last minute's trades that shared a millisecond with the
            # previous trade, shrunk by a prior of SAME_MS_PRIOR_TRADES ordinary trades: one
            # multi-fill order on an illiquid coin is not a rush, dozens of same-ms buys are.
            same / (trades_f + SAME_MS_PRIOR_TRADES / cfg.fast_tau_s),
            # flat_trades, flat_surprise
            float(flat),
            -math.log((1e-9 if 1e-9 > trades_s else trades_s) * 86_400.0 * (1.0 - q)) - flat * math.log(q),
            # trade_rate_ratio_medium, volume_ratio_medium
            math.log((trades_m + 1e-9) / (trades_s + 1e-9)),
            math.log((vol_m + 1e-12) / (vol_s + 1e-12)),
        )

    def _bar_values(self) -> BarValues:
        """The bar indicators' current values; they change only when a bar closes (cached in _bars)."""
        return (
            self.lag_1m.get(), self.lag_momentum.get(), self.bands.mean(), self.bands.std(),
            self.macd.get(), self.returns.std(), self.rsi.get(),
        )

    # --- state ----------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (lists and numbers only)."""
        return {
            "v": SCHEMA_VERSION,
            "cfg": [
                self.config.bar_seconds, self.config.fast_tau_s, self.config.slow_tau_s,
                self.config.fill_gap_s, self.config.max_gap_s, self.config.warmup_s, self.config.medium_tau_s,
            ],
            "t": [self.last_ms, self.started_ms, self.rates_started_ms, self.bar_index, self.flat_trades],
            "p": [_nan_to_none(self.bar_close), _nan_to_none(self.last_price), _nan_to_none(self.bands_last)],
            "bars": [
                self.rsi.to_state(), self.macd.to_state(), self.bands.to_state(), self.returns.to_state(),
                self.lag_1m.to_state(), self.lag_momentum.to_state(), self.ema_close.to_state(),
            ],
            "rates": [r.to_state() for r in self._rates()],
        }

    def _rates(self) -> tuple[DecayingRate, ...]:
        return (
            self.trades_fast, self.trades_slow, self.volume_fast, self.volume_slow,
            self.buys_fast, self.sells_fast, self.same_ms_fast, self.repeats_slow,
            self.trades_medium, self.volume_medium,
        )

    @classmethod
    def from_state(cls, symbol: str, state: dict[str, Any]) -> FeatureEngine:
        if state.get("v") != SCHEMA_VERSION:
            raise ValueError(f"unsupported feature state version {state.get('v')!r}")
        eng = cls(symbol, FeatureConfig(*state["cfg"]))
        eng.last_ms, eng.started_ms, eng.rates_started_ms, eng.bar_index, eng.flat_trades = state["t"]
        eng.bar_close, eng.last_price, eng.bands_last = (_none_to_nan(x) for x in state["p"])
        bars = state["bars"]
        eng.rsi = WilderRSI.from_state(bars[0])
        eng.macd = MACD.from_state(bars[1])
        eng.bands = RollingMeanStd.from_state(bars[2])
        eng.returns = RollingMeanStd.from_state(bars[3])
        eng.lag_1m = Lag.from_state(bars[4])
        eng.lag_momentum = Lag.from_state(bars[5])
        eng.ema_close = EMA.from_state(bars[6])
        rates = [DecayingRate.from_state(r) for r in state["rates"]]
        (eng.trades_fast, eng.trades_slow, eng.volume_fast, eng.volume_slow,
         eng.buys_fast, eng.sells_fast, eng.same_ms_fast, eng.repeats_slow) = rates[:8]
        if len(rates) > 8:  # a state from before the medium window starts it empty (it fills in minutes)
            eng.trades_medium, eng.volume_medium = rates[8:10]
        eng._bars = None  # the bar indicators were replaced
        return eng


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
