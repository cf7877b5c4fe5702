"""The per-tick fast paths give bit-identical results to the plain code they replace.

The pipeline's hot path avoids calls and allocations (written-out constructors, the
statistical layer's inlined baseline update, DecayingRate.update_value,
AdaptiveThreshold.step). Each is checked here against the straightforward version, with
``==`` on floats (not approx): outputs must not change by a single bit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.detectors.novelty import EMPTY, QUANTUM
from models.detectors.statistical import (
    MONITORED,
    PRICE_STEP_FEATURES,
    Z_CLIP,
    Z_NAMES,
    Baseline,
    StatisticalConfig,
    StatisticalDetector,
    StatResult,
    _sigmoid,
)
from models.features import FEATURE_NAMES, FeatureEngine, Features
from models.indicators import DecayingRate
from models.pipeline import Position
from models.synthetic import SymbolProfile, default_profiles, generate
from models.thresholds import AdaptiveConfig, AdaptiveThreshold
from models.ticks import Tick

T0 = 1_700_000_000_000


# --------------------------------------------------------------------------- constructors
WRITTEN_OUT_INIT = (Features, StatResult, Tick, Position)


@pytest.mark.parametrize("cls", WRITTEN_OUT_INIT, ids=lambda c: c.__name__)
def test_written_out_constructors_set_every_field_by_its_name(cls: type) -> None:
    """These classes write ``__init__`` out (mypyc compiles it; see Features): it must take the
    dataclass's fields, in order, by name, with the same defaults, and store each one."""
    fields = dataclasses.fields(cls)
    values = {f.name: _distinct_value(f, i) for i, f in enumerate(fields)}
    by_name, by_position = cls(**values), cls(*values.values())
    assert [getattr(by_name, f.name) for f in fields] == list(values.values())
    assert by_position == by_name and repr(by_position) == repr(by_name)
    required = {f.name: values[f.name] for f in fields if f.default is dataclasses.MISSING}
    assert all(getattr(cls(**required), f.name) == f.default for f in fields if f.name not in required)
    first, other = fields[0].name, _distinct_value(fields[0], len(fields))
    changed = dataclasses.replace(by_name, **{first: other})
    assert getattr(changed, first) == other and getattr(by_name, first) == values[first]


#: Compiled, an optional field's annotation is only ``type``: these take a value by name.
OPTIONAL_FIELD_VALUES = {"side": "sell", "exchange": "exch", "trade_id": 77}


def _distinct_value(field: dataclasses.Field[object], i: int) -> object:
    """A value of the field's type (compiled constructors check types), distinct per field but for bools."""
    if field.name in OPTIONAL_FIELD_VALUES:
        return OPTIONAL_FIELD_VALUES[field.name]
    annotation = field.type
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    for prefix, value in (("str", f"v{i}"), ("Side", f"v{i}"), ("bool", i % 2 == 0), ("int", 1000 + i),
                          ("float", i + 0.25), ("tuple", (i + 0.5,))):
        if kind.startswith(prefix):
            return value
    raise AssertionError(f"no test value for a field of type {kind}")


# --------------------------------------------------------------------------- indicators / thresholds
@given(st.lists(st.tuples(st.integers(-2_000, 90_000), st.floats(0.0, 1e6)), min_size=1, max_size=40),
       st.sampled_from([1.0, 60.0, 3600.0]))
def test_update_value_is_update_then_value_at(steps: list[tuple[int, float]], tau_s: float) -> None:
    fast, plain = DecayingRate(tau_s), DecayingRate(tau_s)
    t = T0
    for dt, amount in steps:
        t += dt
        got = fast.update_value(t, amount)
        plain.update(t, amount)
        assert got == plain.value_at(t)
        assert fast.to_state() == plain.to_state()


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300), st.floats(0.05, 0.95),
       st.booleans(), st.integers(1, 20))
@settings(max_examples=80, deadline=None)
def test_adaptive_step_is_adjusted_threshold_learn(scores: list[float], thr: float, enabled: bool,
                                                   min_ticks: int) -> None:
    config = AdaptiveConfig(enabled=enabled, min_ticks=min_ticks, k=2.0)
    fast, plain = AdaptiveThreshold(config), AdaptiveThreshold(config)
    for i, s in enumerate(scores):
        expected = (plain.adjusted(s, thr), plain.threshold(thr))
        plain.learn(1000 * i, s, thr)
        assert fast.step(1000 * i, s, thr) == expected
        assert fast.to_state() == plain.to_state()


# --------------------------------------------------------------------------- statistical layer
History = dict[int, list[float]]  # bucket id -> per-channel maximum of the rule statistics learned in it


def brute_limits(det: StatisticalDetector, t: int, history: History) -> list[float]:
    """The novelty limits by brute force: the largest statistic of the window's buckets."""
    cfg = det.config
    if cfg.novelty_window_s <= 0:
        return [EMPTY] * (len(MONITORED) + 1)
    bucket_ms = int(cfg.novelty_window_s * 1000) // cfg.novelty_buckets
    b = t // bucket_ms
    inside = [vals for tb, vals in history.items() if b - cfg.novelty_buckets < tb <= b]
    channels = range(len(MONITORED) + 1)  # the features, then the stale-price surprise
    return [max([math.ceil(v[i] * QUANTUM) / QUANTUM for v in inside], default=EMPTY) for i in channels]


def plain_wash_multiple(cfg: StatisticalConfig, features: Features, medium: bool = False) -> float | None:
    """log of min(trade multiple, volume multiple), the rates with the prior added; None if unknown.

    Over the last minute, or with ``medium`` over the medium window (its rate = the hour's times its ratio).
    """
    ratio, volume, prior = features.trade_rate_ratio, features.volume_ratio, cfg.wash_prior_per_s
    inputs = [features.trade_rate, ratio, volume]
    if medium:
        volume, prior = features.volume_ratio_medium, cfg.wash_prior_per_s_medium
        inputs += [features.trade_rate_ratio_medium, volume]
    if any(math.isnan(x) for x in inputs) or features.trade_rate < 0:
        return None
    slow = features.trade_rate * math.exp(-max(ratio, -50.0))
    recent = slow * math.exp(min(features.trade_rate_ratio_medium, 50.0)) if medium else features.trade_rate
    if min(recent, slow) + prior <= 0:
        return None
    return min(math.log((recent + prior) / (slow + prior)), volume)  # the volume ratios are logs already


def plain_price_step(det: StatisticalDetector, price: float) -> float:
    """The smallest non-zero absolute price change so far, this price's included; 0.0 if none."""
    moves = [abs(price - det.last_price)] if not math.isnan(det.last_price) else []
    return min([m for m in [*moves, det.price_step] if m > 0.0], default=0.0)


def plain_score(det: StatisticalDetector, features: Features, history: History) -> StatResult:
    """score_one_raw as first written (a getattr, a strict zip and a builtin min per feature),
    plus the novelty gate from a brute-force history."""
    cfg = det.config
    limits = brute_limits(det, features.timestamp, history)
    inv_width = 1.0 / cfg.z_width
    zs: list[float] = []
    values: list[float | None] = []
    scales: list[float] = []
    best, rule = -math.inf, "none"
    held_back = []  # excesses of lone rules on values that are no new extreme
    step = plain_price_step(det, features.price)
    monitored = zip(MONITORED, det.baselines, Z_NAMES, limits[:-1], strict=True)
    for (name, kind, direction, floor, centre), base, z_name, limit in monitored:
        if name in PRICE_STEP_FEATURES:
            floor = max(floor, 100.0 * step / features.price / cfg.price_step_sigmas)
        x = getattr(features, name)
        if x != x:  # nan: not known yet
            zs.append(0.0)
            values.append(None)
            scales.append(floor)
            continue
        v = math.log(x + 1e-6) if kind == "log" else math.log1p(x if x > 0.0 else 0.0) if kind == "log1p" else x
        values.append(v)
        sd = math.sqrt(base.var) if base.var > 0.0 else 0.0
        scale = sd if sd > floor else floor
        scales.append(scale)
        if base.n == 0:
            zs.append(0.0)
            continue
        z = (v - base.mean) / scale
        z = -Z_CLIP if z < -Z_CLIP else Z_CLIP if z > Z_CLIP else z
        zs.append(z)
        stat = z if direction > 0 else abs(z)
        excess = (stat - centre) * inv_width
        if stat <= limit:
            held_back.append(excess)
        elif excess > best:
            best, rule = excess, z_name
    width = cfg.z_width * 0.7
    for joint, centre, name in (
        (min(abs(zs[0]), zs[2], zs[3]), cfg.pump_z, "pump_signature"),
        (min(zs[2], zs[3]), cfg.burst_z, "volume_burst"),
    ):
        excess = (joint - centre) / width
        if excess > best:
            best, rule = excess, name
    wash, wash_medium = plain_wash_multiple(cfg, features), plain_wash_multiple(cfg, features, medium=True)
    known = [w for w in (wash, wash_medium) if w is not None]
    price_moved = max(abs(zs[0]), zs[5]) >= cfg.pump_z
    if known and not price_moved:
        excess = (max(known) - math.log(cfg.wash_multiple)) / cfg.wash_width
        if excess > best:
            best, rule = excess, "volume_without_price"
    surprise = features.flat_surprise
    if features.flat_trades >= cfg.min_flat_trades and surprise == surprise:
        excess = (surprise - cfg.stale_surprise) * inv_width
        if surprise <= limits[-1]:
            held_back.append(excess)
        elif excess > best:
            best, rule = excess, "stale_price"
    active = not features.warming_up and det.learned >= cfg.min_baseline_ticks
    score = _sigmoid(best) if active else 0.0
    top = max(held_back, default=-math.inf)
    protected = active and top > best and _sigmoid(top) >= cfg.protect_threshold
    return StatResult(score, rule if active else "grace", tuple(zs), active, tuple(values), tuple(scales), protected,
                      0.0 if wash is None else wash, 0.0 if wash_medium is None else wash_medium)


def _record(history: History, bucket: int, stats: list[float]) -> None:
    old = history.get(bucket, [EMPTY] * len(stats))
    history[bucket] = [max(a, b) for a, b in zip(old, stats, strict=True)]


def plain_learn(det: StatisticalDetector, features: Features, result: StatResult, history: History) -> None:
    """learn_one as first written: Baseline.update per known value; the tick joins the history."""
    cfg = det.config
    det.price_step, det.last_price = plain_price_step(det, features.price), features.price
    if cfg.novelty_window_s > 0:
        bucket_ms = int(cfg.novelty_window_s * 1000) // cfg.novelty_buckets
        surprise = features.flat_surprise
        stale = surprise if features.flat_trades >= cfg.min_flat_trades and surprise == surprise else EMPTY
        _record(history, features.timestamp // bucket_ms, [
            *(EMPTY if v is None else z if direction > 0 else abs(z)
              for v, z, (_, _, direction, _, _) in zip(result.values, result.z, MONITORED, strict=True)), stale])
    if result.active and (result.score >= cfg.protect_threshold or result.protected):
        return
    t = features.timestamp
    min_ticks, clip = cfg.min_baseline_ticks, cfg.clip_sigma
    for v, scale, base in zip(result.values, result.scales, det.baselines, strict=True):
        if v is None:
            continue
        if base.n >= min_ticks:
            lim = clip * scale
            lo, hi = base.mean - lim, base.mean + lim
            v = lo if v < lo else hi if v > hi else v
        base.update(t, v)
    det.learned += 1


@pytest.mark.parametrize("config", [StatisticalConfig(), StatisticalConfig(min_baseline_ticks=5, z_width=0.5),
                                    StatisticalConfig(novelty_window_s=0.0),
                                    StatisticalConfig(novelty_window_s=600.0, novelty_buckets=3)])
def test_statistical_layer_matches_the_plain_version(config: StatisticalConfig) -> None:
    # The last symbol trades at 1e-6 BTC, so one satoshi is 1 % of its price: the price-step floor binds.
    coarse = SymbolProfile("COARSE/BTC", 1e-6, 0.5, 1e4, liquid=False)
    profiles = [*default_profiles(3, seed=7), coarse]
    batch, _ = generate(profiles, start_ms=T0, duration_s=1800.0, seed=7)
    rng = np.random.default_rng(0)
    engines: dict[str, FeatureEngine] = {}
    fast: dict[str, StatisticalDetector] = {}
    plain: dict[str, StatisticalDetector] = {}
    histories: dict[str, History] = {}
    gated = stepped = 0
    for k, tick in enumerate(batch.ticks()):
        if tick.symbol not in engines:
            engines[tick.symbol] = FeatureEngine(tick.symbol)
            fast[tick.symbol], plain[tick.symbol] = StatisticalDetector(config), StatisticalDetector(config)
            histories[tick.symbol] = {}
        f = engines[tick.symbol].update(tick)
        if k % 50 == 0:  # now and then a wild value, so protection and clipping are exercised
            f = dataclasses.replace(f, volume_ratio=float(rng.normal(0.0, 20.0)), price_change_pct=math.nan)
        history = histories[tick.symbol]
        got, want = fast[tick.symbol].score_one_raw(f), plain_score(plain[tick.symbol], f, history)
        assert repr(got) == repr(want)
        stepped += tick.symbol == coarse.symbol and got.scales[0] > MONITORED[0][3]
        det = fast[tick.symbol]
        if det.novelty is not None:
            assert det.novelty.limits(f.timestamp) == brute_limits(det, f.timestamp, history)
            gated += got.protected
        det.learn_one(f, got)
        plain_learn(plain[tick.symbol], f, want, history)
        got_state, want_state = det.to_state(), plain[tick.symbol].to_state()
        keys = ("n", "b", "p")  # the plain detector keeps its novelty window in `history`
        assert repr([got_state[k] for k in keys]) == repr([want_state[k] for k in keys])
        # to_state/from_state keeps the window: the restored detector scores the next tick alike.
        if k % 997 == 0:
            fast[tick.symbol] = StatisticalDetector.from_state(orjson.loads(orjson.dumps(got_state)), config)
    assert config.novelty_window_s == 0 or gated > 0  # not vacuous: the gate held a flagged tick back
    assert stepped > 0  # and the price-step floor set a scale


def test_learn_one_refuses_mismatched_lengths_before_updating() -> None:
    det = StatisticalDetector()
    bad = StatResult(0.0, "grace", (), False, (1.0,), (1.0,))
    before = det.to_state()
    with pytest.raises(ValueError):
        det.learn_one(Features("X", T0, 1.0, False, *[0.0] * len(FEATURE_NAMES)), bad)
    assert det.to_state() == before and isinstance(det.baselines[0], Baseline)
