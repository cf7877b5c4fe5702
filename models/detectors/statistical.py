"""The statistical layer: per-symbol robust z-scores and named rules.

Each monitored feature is compared with the symbol's own event-time baseline (an
exponentially weighted mean and variance over ``baseline_tau_s``, default 2 h). Baselines
are *winsorised* (an update is clipped to mean +/- ``clip_sigma`` std, so a single wild
value cannot drag them) and *protected* (a tick this layer flags is not learned, as River's
``protect_anomaly_detector`` does), so an ongoing pump does not become the new normal.

The z-vector is also the input of the forests: it is scale-free, so one model serves a
BTC pair trading 10 times a second and an illiquid alt trading twice a minute.

Score direction: higher is more anomalous, in [0, 1]; ``0.0`` while the symbol warms up
(first ``warmup_s`` of features, or fewer than ``min_baseline_ticks`` learned ticks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

from models._fastinit import field_values
from models.detectors.novelty import EMPTY, NoveltyWindow
from models.features import Features

#: (feature, transform, direction, std floor, lone-z centre). Direction +1 watches rises only,
#: 0 both ways. Price moves need a larger lone z: returns are heavy-tailed and volatility
#: clusters, so a 6-sigma move against a 2-hour baseline happens in honest markets; the
#: joint rules below catch manipulated moves, which come with volume and trades.
MONITORED: tuple[tuple[str, str, int, float, float], ...] = (
    ("price_change_pct", "id", 0, 0.05, 8.0),
    ("momentum", "id", 0, 0.05, 8.0),
    ("volume_ratio", "id", 1, 0.10, 6.0),
    ("trade_rate_ratio", "id", 1, 0.10, 6.0),
    ("same_ms_share", "id", 1, 0.10, 6.0),
    ("volatility", "log", 1, 0.10, 8.0),
    ("flat_trades", "log1p", 1, 0.50, 6.0),
    ("buy_sell_imbalance", "id", 0, 0.05, 8.0),
)
Z_NAMES: tuple[str, ...] = tuple(f"z_{name}" for name, *_ in MONITORED)
#: Extra scale-free inputs of the forests, beside the z-vector.
#: The last two are the volume-without-price and stale-price rules' statistics (log multiple, e-folds):
#: the forests learn where those rules' fixed thresholds sit wrong for a symbol, instead of seeing only
#: z-scores, in which a wash-trading minute and an ordinary busy one overlap (StatisticalConfig).
CONTEXT_NAMES: tuple[str, ...] = (
    "rsi", "bollinger_position", "macd_hist", "same_ms_share", "wash_log_multiple", "flat_surprise",
    "wash_log_multiple_medium",
)
MODEL_INPUT_NAMES: tuple[str, ...] = Z_NAMES + CONTEXT_NAMES
Z_CLIP: Final = 50.0
#: The monitored features' values of one tick, in MONITORED order, in one C-level call.
_monitored_values: Final = attrgetter(*(name for name, *_ in MONITORED))
#: Monitored features measured in price moves: their std floor is at least a share of one price step.
PRICE_STEP_FEATURES: frozenset[str] = frozenset({"price_change_pct", "momentum"})
#: Per monitored feature: (transform, watches rises only, std floor, lone-z centre, z name, in price steps).
_SPECS: Final[tuple[tuple[str, bool, float, float, str, bool], ...]] = tuple(
    (kind, direction > 0, floor, centre, z_name, name in PRICE_STEP_FEATURES)
    for (name, kind, direction, floor, centre), z_name in zip(MONITORED, Z_NAMES, strict=True)
)
_RISING: Final[tuple[bool, ...]] = tuple(spec[1] for spec in _SPECS)
#: Novelty channels: one per monitored feature, then the stale-price surprise.
NOVELTY_CHANNELS: Final = len(MONITORED) + 1
_NO_LIMITS: Final[tuple[float, ...]] = (EMPTY,) * NOVELTY_CHANNELS  # novelty off: every value is new


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _wash_log_multiples(prior_per_s: float, prior_per_s_medium: float, features: Features) -> tuple[float, float]:
    """Log of min(trade-rate multiple, volume multiple) over the last minute and over the medium
    window (~10 minutes), each against the hour; nan when unknown.

    The trade multiples add ``prior_per_s`` (``prior_per_s_medium``) trades/s to both rates, so a
    handful of trades on a quiet symbol is no multiple; the volume ratios are logs of volumes already.
    The hourly rate is recovered once from the fast rate and its ratio, for both windows.
    """
    fast, log_ratio = features.trade_rate, features.trade_rate_ratio
    if not (fast >= 0.0 and log_ratio == log_ratio):  # also false for nan
        return math.nan, math.nan
    slow = fast * math.exp(-(log_ratio if log_ratio > -50.0 else -50.0))  # the ratio is a log of rates
    short = _shrunk_multiple(fast, slow, features.volume_ratio, prior_per_s)
    medium_ratio = features.trade_rate_ratio_medium
    if medium_ratio != medium_ratio:
        return short, math.nan
    medium = slow * math.exp(medium_ratio if medium_ratio < 50.0 else 50.0)
    return short, _shrunk_multiple(medium, slow, features.volume_ratio_medium, prior_per_s_medium)


def _shrunk_multiple(recent: float, slow: float, log_volume_multiple: float, prior_per_s: float) -> float:
    """min(log trade multiple with ``prior_per_s`` added to both rates, log volume multiple); nan if unknown."""
    if log_volume_multiple != log_volume_multiple or recent + prior_per_s <= 0.0 or slow + prior_per_s <= 0.0:
        return math.nan  # no volume ratio, or no rate at all and no prior: no multiple
    trades = math.log((recent + prior_per_s) / (slow + prior_per_s))
    return trades if trades < log_volume_multiple else log_volume_multiple


class Baseline:
    """Event-time EW mean/variance that starts as a plain running mean.

    The weight of a new value is ``max(1 - exp(-dt/tau), 1/n)``: the running average of the
    first values until the exponential window has filled, the exponential average after. A
    pure exponential start would be biased towards the first value and would report a tiny
    variance for its first ``tau`` seconds, so every early tick would look extreme.
    """

    __slots__ = ("tau_s", "mean", "var", "n", "last_ms")

    def __init__(self, tau_s: float) -> None:
        self.tau_s = tau_s
        self.mean = 0.0
        self.var = 0.0
        self.n = 0
        self.last_ms = 0

    def update(self, t_ms: int, x: float) -> None:
        n = self.n = self.n + 1
        dt_ms = t_ms - self.last_ms
        a = -math.expm1(-dt_ms / (1000.0 * self.tau_s)) if n > 1 and dt_ms > 0 else 0.0
        if a < 1.0 / n:
            a = 1.0 / n
        diff = x - self.mean
        incr = a * diff
        self.mean += incr
        self.var = (1.0 - a) * (self.var + diff * incr)
        if t_ms > self.last_ms:
            self.last_ms = t_ms

    def std(self) -> float:
        return math.sqrt(self.var) if self.var > 0 else 0.0

    def to_state(self) -> list[float]:
        return [self.tau_s, self.mean, self.var, self.n, self.last_ms]

    @classmethod
    def from_state(cls, state: list[float]) -> Baseline:
        b = cls(float(state[0]))
        b.mean, b.var, b.n, b.last_ms = float(state[1]), float(state[2]), int(state[3]), int(state[4])
        return b


@dataclass(frozen=True, slots=True)
class StatisticalConfig:
    """Parameters of the statistical layer (see the module docstring)."""

    baseline_tau_s: float = 7200.0
    clip_sigma: float = 4.0
    min_baseline_ticks: int = 30
    z_width: float = 1.0  # a lone |z| at its centre (MONITORED) scores 0.5, one width more ~0.73
    pump_z: float = 3.0  # price, volume and trade rate all >= 3 sigma together score 0.5
    burst_z: float = 3.5  # volume and trade rate both >= 3.5 sigma (wash trading) score 0.5
    # Volume without price: trades and volume over the last minute (``fast_tau_s``) both at this
    # multiple of their hourly rate, while price and volatility stay within ``pump_z`` sigma,
    # score 0.5 (``wash_width`` in log units per sigmoid unit). An absolute multiple, not a z:
    # the spread of a symbol's own rate ratio is set by its honest bursts, and on illiquid symbols
    # by counting noise, so in z units wash trading and an ordinary busy minute overlap. The rate
    # prior (trades/s added to both rates) keeps a handful of trades on a quiet symbol from
    # counting as a multiple. Real markets' volatility grows with activity (Clark 1973); trading
    # that does not move the price is what wash trading leaves behind (Cong et al. 2023).
    wash_multiple: float = 7.0
    wash_width: float = 0.25
    wash_prior_per_s: float = 0.05
    # The same rule over the medium window (~10 minutes, FeatureConfig.medium_tau_s): the same
    # prior of ~3 trades per window, so a coin that trades every few minutes shows a burst that
    # lasts minutes, which one minute's handful of trades cannot tell from chance.
    wash_prior_per_s_medium: float = 0.005
    protect_threshold: float = 0.5
    # Stale price: a run of unchanged prices this rare scores 0.5 (flat_surprise, e-folds below
    # once a symbol-day: ln 1e6 = a run expected once in a million symbol-days if repeats were
    # independent). The margin is wide because repeats cluster in bursts of activity: ordinary
    # runs reach 7-8 on liquid synthetic symbols, a frozen feed goes far past 30 within minutes.
    stale_surprise: float = math.log(1e6)
    min_flat_trades: int = 5
    # A lone-feature rule fires only on a new extreme of its statistic within this window
    # (models/detectors/novelty.py): a move that recurs within it is rare but not new. 0 = off.
    novelty_window_s: float = 7200.0
    novelty_buckets: int = 12
    # Prices move in whole steps (the exchange's tick size). Where one step is a sizeable share of the
    # price (one satoshi is 0.3-1 % of a price of a few hundred satoshi, 10 % of 1e-7 BTC: low-priced
    # BTC pairs, the usual pump targets) the price sits on one level for long stretches, the baseline
    # spread of its changes collapses, and the next one-step move would read as a 30-50 sigma event.
    # So the scale of the price-change features is at least one step (the smallest price change this
    # symbol has shown) divided by this: a one-step move is at most ``price_step_sigmas`` sigma, a
    # pump of several steps still stands out.
    price_step_sigmas: float = 2.0

    def __post_init__(self) -> None:
        if self.baseline_tau_s <= 0:
            raise ValueError(f"baseline_tau_s must be > 0, got {self.baseline_tau_s}")
        if self.z_width <= 0:
            raise ValueError(f"z_width must be > 0, got {self.z_width}")
        if self.clip_sigma <= 0:
            raise ValueError(f"clip_sigma must be > 0, got {self.clip_sigma}")
        if self.novelty_window_s < 0:
            raise ValueError(f"novelty_window_s must be >= 0, got {self.novelty_window_s}")
        if self.price_step_sigmas <= 0:
            raise ValueError(f"price_step_sigmas must be > 0, got {self.price_step_sigmas}")
        if self.wash_multiple <= 1.0 or self.wash_width <= 0 or min(self.wash_prior_per_s,
                                                                    self.wash_prior_per_s_medium) < 0:
            raise ValueError(f"wash rule needs multiple > 1, width > 0, priors >= 0; got {self.wash_multiple}, "
                             f"{self.wash_width}, {self.wash_prior_per_s}, {self.wash_prior_per_s_medium}")

    def __reduce__(self) -> tuple[type[StatisticalConfig], tuple[Any, ...]]:
        return StatisticalConfig, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


@dataclass(slots=True)
class StatResult:
    """What the statistical layer says about one tick.

    A value: never changed once built. Not ``frozen``, for the compiled constructor (as
    :class:`~models.features.Features`).
    """

    score: float
    rule: str  # the rule that gave the score: "pump_signature" or "z_<feature>"
    z: tuple[float, ...]  # in Z_NAMES order, clipped to +/- Z_CLIP, 0 when unknown
    active: bool  # False during the grace period
    # Work shared with learn_one (same tick, same baselines): transformed values (None when
    # unknown) and the scale each z was divided by. Empty for a hand-made result.
    values: tuple[float | None, ...] = ()
    scales: tuple[float, ...] = ()
    # Flagged but for the novelty gate (a rare value that is no new extreme): not alerted on, and
    # not learned either, so the baselines are those of the layer without the gate.
    protected: bool = False
    # The volume-without-price rule's statistics over the last minute and over the medium window,
    # whether or not the price moved (0.0 when unknown); the rule takes the larger.
    wash_log_multiple: float = 0.0
    wash_log_multiple_medium: float = 0.0

    def __init__(  # noqa: PLR0913 - one parameter per field, as dataclasses would generate
        self, score: float, rule: str, z: tuple[float, ...], active: bool, values: tuple[float | None, ...] = (),
        scales: tuple[float, ...] = (), protected: bool = False, wash_log_multiple: float = 0.0,
        wash_log_multiple_medium: float = 0.0,
    ) -> None:
        self.score = score
        self.rule = rule
        self.z = z
        self.active = active
        self.values = values
        self.scales = scales
        self.protected = protected
        self.wash_log_multiple = wash_log_multiple
        self.wash_log_multiple_medium = wash_log_multiple_medium

    def model_input(self, features: Features) -> list[float]:
        """The forests' input row: z-vector then scale-free context (nan mapped to neutral)."""
        rsi = features.rsi
        bb = features.bollinger_position
        hist = features.macd_hist
        wash = self.wash_log_multiple
        wash_medium = self.wash_log_multiple_medium
        surprise = features.flat_surprise
        return [
            *self.z,
            0.0 if math.isnan(rsi) else rsi / 100.0 - 0.5,
            0.0 if math.isnan(bb) else max(-10.0, min(10.0, bb)),
            0.0 if math.isnan(hist) else max(-10.0, min(10.0, hist)),
            features.same_ms_share,
            -10.0 if wash < -10.0 else 10.0 if wash > 10.0 else wash,
            0.0 if surprise != surprise else -10.0 if surprise < -10.0 else 50.0 if surprise > 50.0 else surprise,
            -10.0 if wash_medium < -10.0 else 10.0 if wash_medium > 10.0 else wash_medium,
        ]

    def __reduce__(self) -> tuple[type[StatResult], tuple[Any, ...]]:
        return StatResult, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


class StatisticalDetector:
    """Robust z-scores of one symbol's features against its own protected baseline.

    Examples
    --------
    >>> from models.features import FeatureEngine
    >>> from models.ticks import Tick
    >>> eng, det = FeatureEngine("X"), StatisticalDetector()
    >>> res = det.score_one_raw(eng.update(Tick("X", 10.0, 1.0, 1_700_000_000_000)))
    >>> res.score, res.rule, res.active  # the first tick is inside the grace period
    (0.0, 'grace', False)
    """

    def __init__(self, config: StatisticalConfig | None = None) -> None:
        self.config = config or StatisticalConfig()
        self._log_wash_multiple = math.log(self.config.wash_multiple)  # once, not per tick
        self.baselines = [Baseline(self.config.baseline_tau_s) for _ in MONITORED]
        self.learned = 0
        self.novelty = self._new_novelty(self.config)
        self.last_price = math.nan
        self.price_step = 0.0  # smallest price change seen (absolute); 0.0 until the price has moved
        # The novelty window's values of the tick scored last, and its result: learn_one of that same
        # result (what the pipeline does next) pushes them instead of deriving them again. Not state.
        self._scored: StatResult | None = None
        self._scored_stats: list[float] = []

    def _price_step(self, price: float) -> float:
        """The smallest price change seen, this tick's included (0.0 while the price never moved).

        Absolute, because an exchange's tick size is: the relative step grows as the price falls.
        """
        step = self.price_step
        last = self.last_price
        move = price - last if price > last else last - price  # nan before the first price
        if move > 0.0 and (step == 0.0 or move < step):
            return move
        return step

    @staticmethod
    def _new_novelty(cfg: StatisticalConfig) -> NoveltyWindow | None:
        if cfg.novelty_window_s <= 0:
            return None
        return NoveltyWindow(NOVELTY_CHANNELS, int(cfg.novelty_window_s * 1000), cfg.novelty_buckets)

    def score_one_raw(self, features: Features) -> StatResult:
        """Score one tick without learning it."""
        # Hot path (once per tick): the monitored values come from one attrgetter call and the
        # per-feature constants from a precomputed table; the arithmetic is unchanged.
        cfg = self.config
        inv_width = 1.0 / cfg.z_width
        zs: list[float] = []
        values: list[float | None] = []
        scales: list[float] = []
        seen: list[float] = []  # what the novelty window records of this tick (learn_one pushes it)
        best, rule = -math.inf, "none"
        gated = -math.inf  # the largest excess the novelty gate held back
        baselines = self.baselines
        novelty = self.novelty
        limits = _NO_LIMITS if novelty is None else novelty.limits(features.timestamp)
        price = features.price
        step_floor = 100.0 * self._price_step(price) / (price * cfg.price_step_sigmas)
        # Lengths checked once: a strict zip costs more than the rest of the loop header.
        if len(baselines) != len(_SPECS):
            raise ValueError(f"{len(baselines)} baselines for {len(_SPECS)} monitored features")
        # Typed, so that the compiled loop does float arithmetic in C (attrgetter's result can only be
        # typed Any), and indexed rather than zipped: a zip is a generic iterator building a tuple a step.
        monitored: tuple[float, ...] = _monitored_values(features)
        x: float
        for i in range(len(_SPECS)):
            x = monitored[i]
            kind, rising, floor, centre, z_name, stepped = _SPECS[i]
            base = baselines[i]
            limit = limits[i]
            if stepped and step_floor > floor:
                floor = step_floor
            if x != x:  # nan: not known yet
                zs.append(0.0)
                values.append(None)
                scales.append(floor)
                seen.append(EMPTY)
                continue
            v = math.log(x + 1e-6) if kind == "log" else math.log1p(x if x > 0.0 else 0.0) if kind == "log1p" else x
            values.append(v)
            var = base.var
            sd = math.sqrt(var) if var > 0.0 else 0.0
            scale = sd if sd > floor else floor
            scales.append(scale)
            if base.n == 0:
                zs.append(0.0)
                seen.append(0.0)  # the statistic of a z of 0, rising or not
                continue
            z = (v - base.mean) / scale
            z = -Z_CLIP if z < -Z_CLIP else Z_CLIP if z > Z_CLIP else z
            zs.append(z)
            # The sigmoid is monotonic: compare its arguments, take one sigmoid at the end.
            stat = z if rising else abs(z)
            seen.append(stat)
            excess = (stat - centre) * inv_width
            if excess > best:
                if stat > limit:  # rare against the baseline and new in the window
                    best, rule = excess, z_name
                elif excess > gated:
                    gated = excess
        # Pump signature: price, volume and trade count rising together (La Morgia et al. 2020).
        # min() spelled out as the builtin does it (keep the first, replace on strictly less).
        width = cfg.z_width * 0.7
        z_volume, z_trades = zs[2], zs[3]
        joint = abs(zs[0])  # price moves on volume and trades
        if z_volume < joint:
            joint = z_volume
        if z_trades < joint:
            joint = z_trades
        excess = (joint - cfg.pump_z) / width
        if excess > best:
            best, rule = excess, "pump_signature"
        joint = z_trades if z_trades < z_volume else z_volume  # volume and trades without the price
        excess = (joint - cfg.burst_z) / width
        if excess > best:
            best, rule = excess, "volume_burst"
        # Volume without price: only while price and volatility stay within pump_z sigma (a moving
        # price is the pump and lone price rules' to judge).
        wash, wash_medium = _wash_log_multiples(cfg.wash_prior_per_s, cfg.wash_prior_per_s_medium, features)
        # The rule's statistic: the larger known one (nan compares false, so either may be unknown).
        larger = wash if wash_medium != wash_medium or wash > wash_medium else wash_medium
        if larger == larger and abs(zs[0]) < cfg.pump_z and zs[5] < cfg.pump_z:
            excess = (larger - self._log_wash_multiple) / cfg.wash_width
            if excess > best:
                best, rule = excess, "volume_without_price"
        if wash != wash:
            wash = 0.0  # unknown: a neutral model input
        if wash_medium != wash_medium:
            wash_medium = 0.0
        # Stale price: prices frozen while trades go on, judged by the symbol's own repeat rate.
        # Gated like the lone rules: a run no more surprising than one of the last 2 h is not new
        # (flat stretches that recur); a frozen feed's surprise keeps growing, so it stays new.
        surprise = features.flat_surprise
        if features.flat_trades >= cfg.min_flat_trades and surprise == surprise:
            seen.append(surprise)
            excess = (surprise - cfg.stale_surprise) * inv_width
            if excess > best:
                if surprise > limits[-1]:
                    best, rule = excess, "stale_price"
                elif excess > gated:
                    gated = excess
        else:
            seen.append(EMPTY)
        active = not features.warming_up and self.learned >= cfg.min_baseline_ticks
        score = _sigmoid(best) if active else 0.0
        protected = active and gated > best and _sigmoid(gated) >= cfg.protect_threshold
        result = StatResult(score, rule if active else "grace", tuple(zs), active, tuple(values), tuple(scales),
                            protected, wash, wash_medium)
        self._scored, self._scored_stats = result, seen
        return result

    def learn_one(self, features: Features, result: StatResult) -> None:
        """Update the baselines unless this tick was flagged (protection) once active.

        ``result`` is this detector's ``score_one_raw`` of the same tick (it carries the
        transformed values, so they are not computed twice).
        """
        cfg = self.config
        if not result.values:
            result = self.score_one_raw(features)
        t = features.timestamp
        values, scales, baselines = result.values, result.scales, self.baselines
        # Lengths checked once, before any update: a strict zip costs more than the loop header.
        if not len(values) == len(scales) == len(baselines) == len(result.z):
            raise ValueError(f"{len(values)} values, {len(scales)} scales and {len(result.z)} z "
                             f"for {len(baselines)} baselines")
        # The price grid is learned from every tick, flagged or not: a step is no anomaly.
        self.price_step = self._price_step(features.price)
        self.last_price = features.price
        novelty = self.novelty
        if novelty is not None:  # every tick counts as seen, flagged or not
            if result is self._scored:  # the common case: scored just now, its values kept
                stats = self._scored_stats
            else:
                stats = [EMPTY if v is None else z if rising else abs(z)
                         for v, z, rising in zip(values, result.z, _RISING, strict=False)]
                surprise = features.flat_surprise
                stats.append(surprise if features.flat_trades >= cfg.min_flat_trades and surprise == surprise
                             else EMPTY)
            novelty.push(t, stats)
        if result.active and (result.score >= cfg.protect_threshold or result.protected):
            return
        min_ticks, clip = cfg.min_baseline_ticks, cfg.clip_sigma
        a = 0.0
        # The key of the cached weight a: none yet (a_n = -1 never equals n >= 1, so the first baseline
        # computes it whatever a_last and a_tau hold; typed int and float for the compiled comparisons).
        a_n, a_last, a_tau = -1, 0, 0.0
        for i in range(len(baselines)):  # indexed, as in score_one_raw; the lengths are checked above
            v = values[i]
            if v is None:
                continue
            scale = scales[i]
            base = baselines[i]
            n = base.n
            mean = base.mean
            if n >= min_ticks:
                lim = clip * scale
                lo, hi = mean - lim, mean + lim
                v = lo if v < lo else hi if v > hi else v
            # Baseline.update(t, v) inlined (8 calls per tick saved); the same operations in the
            # same order, checked against Baseline.update in tests/models/test_detectors.py.
            n += 1
            base.n = n
            last = base.last_ms
            tau_s = base.tau_s
            # The weight depends only on (n, last_ms, tau_s), which the baselines of one symbol
            # usually share: reuse the previous baseline's when they are equal (same inputs, same
            # value), instead of one expm1 per baseline.
            if n != a_n or last != a_last or tau_s != a_tau:
                dt_ms = t - last
                a = -math.expm1(-dt_ms / (1000.0 * tau_s)) if n > 1 and dt_ms > 0 else 0.0
                if a < 1.0 / n:
                    a = 1.0 / n
                a_n, a_last, a_tau = n, last, tau_s
            diff = v - mean
            incr = a * diff
            base.mean = mean + incr
            base.var = (1.0 - a) * (base.var + diff * incr)
            if t > last:
                base.last_ms = t
        self.learned += 1

    def to_state(self) -> dict[str, Any]:
        last = self.last_price
        state: dict[str, Any] = {"n": self.learned, "b": [b.to_state() for b in self.baselines],
                                 "p": [None if last != last else last, self.price_step]}
        if self.novelty is not None:
            state["x"] = self.novelty.to_state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], config: StatisticalConfig | None = None) -> StatisticalDetector:
        det = cls(config)
        det.learned = int(state["n"])
        det.baselines = [Baseline.from_state(b) for b in state["b"]]
        if isinstance(state.get("p"), list):  # older states: no price step known yet
            last, step = state["p"]
            det.last_price = math.nan if last is None else float(last)
            det.price_step = float(step)
        novelty = det.novelty
        if novelty is not None and isinstance(state.get("x"), dict):  # older states: an empty window
            det.novelty = NoveltyWindow.from_state(state["x"], novelty.features, novelty.window_ms, novelty.n_buckets)
        return det
