"""Tests of the synthetic tick generator: determinism, validity, stylised facts, scenarios."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import synthetic_scenarios as scn
from models.synthetic import (
    SATOSHI,
    SCENARIOS,
    Injection,
    Label,
    SymbolProfile,
    TickBatch,
    default_profiles,
    generate,
    random_injections,
    stress_profiles,
)
from models.ticks import Tick, tick_from_dict

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, deliberately not on a minute boundary
H = 3_600_000
LIQ = SymbolProfile("BTCUSDT", 60000.0, 5.0, 0.02, True)
ILL = SymbolProfile("BRD/BTC", 3e-5, 0.2, 500.0, False)
PAIR = [LIQ, ILL]


def _run(injections: list[Injection], hours: float = 6.0, seed: int = 5) -> tuple[TickBatch, list[Label]]:
    return generate(PAIR, start_ms=T0, duration_s=hours * 3600, injections=injections, seed=seed)


def _in(b: TickBatch, lo: int, hi: int) -> np.ndarray:
    return (b.timestamp >= lo) & (b.timestamp < hi)


def _minute_returns(b: TickBatch) -> np.ndarray:
    minute = b.timestamp // 60_000
    last = np.r_[minute[1:] != minute[:-1], True]
    return np.diff(np.log(b.price[last]))


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).sum() / (x * x).sum())


def _same(a: TickBatch, b: TickBatch) -> bool:
    cols = ("timestamp", "price", "quantity", "side", "trade_id")
    return bool((a.symbol == b.symbol).all()) and all(
        getattr(a, c).tobytes() == getattr(b, c).tobytes() for c in cols
    )


@pytest.fixture(scope="module")
def normal() -> tuple[list[SymbolProfile], TickBatch]:
    profiles = default_profiles(6, seed=11)
    batch, labels = generate(profiles, start_ms=T0, duration_s=6 * 3600, seed=5)
    assert labels == []
    return profiles, batch


# ----------------------------------------------------------------------------- basics
def test_same_seed_is_bitwise_identical_and_other_seed_differs() -> None:
    inj = [Injection("pump_and_dump", "BRD/BTC", T0 + H), Injection("stale_price", "BTCUSDT", T0 + H)]
    (a, la), (b, lb) = _run(inj, hours=2), _run(inj, hours=2)
    assert _same(a, b) and la == lb
    c, lc = _run(inj, hours=2, seed=6)
    assert len(c) != len(a) or not np.array_equal(c.price, a.price)
    assert lc != la  # random default parameters depend on the seed too


def test_batch_is_sorted_positive_finite_and_in_range(normal: tuple[list[SymbolProfile], TickBatch]) -> None:
    _, b = normal
    assert b.timestamp.dtype == np.int64 and b.side.dtype == np.int8
    assert b.price.dtype == np.float64 and b.quantity.dtype == np.float64
    assert (np.diff(b.timestamp) >= 0).all()
    assert b.timestamp[0] >= T0 and b.timestamp[-1] < T0 + 6 * H
    assert np.isfinite(b.price).all() and (b.price > 0).all()
    assert np.isfinite(b.quantity).all() and (b.quantity > 0).all()
    assert set(np.unique(b.side).tolist()) == {-1, 1}


def test_trade_ids_count_each_symbol_from_one(normal: tuple[list[SymbolProfile], TickBatch]) -> None:
    profiles, b = normal
    for p in profiles:
        s = b.select(p.symbol)
        assert b.trade_id is not None and s.trade_id is not None
        np.testing.assert_array_equal(s.trade_id, np.arange(1, len(s) + 1))


def test_every_tick_validates_and_records_match_ticks() -> None:
    inj = [
        Injection("pump_and_dump", "BRD/BTC", T0 + 60_000),
        Injection("stale_price", "BTCUSDT", T0 + 60_000),
    ]
    b, _ = _run(inj, hours=0.5)
    n = 0
    for tick, rec in zip(b.ticks(), b.records(), strict=True):
        assert tick_from_dict(tick.to_dict()) == tick
        assert rec == tick.to_dict()
        assert tick.exchange == "synthetic" and tick.side in ("buy", "sell")
        n += 1
    assert n == len(b) > 1000
    first: Tick = next(b.ticks())
    assert first.timestamp == int(b.timestamp[0]) and first.symbol == b.symbol[0]


def test_tick_batch_rejects_ragged_columns() -> None:
    with pytest.raises(ValueError, match="price"):
        TickBatch(
            np.array(["A"], dtype=object),
            np.array([T0]),
            np.array([1.0, 2.0]),
            np.array([1.0]),
            np.array([1], dtype=np.int8),
        )


# ----------------------------------------------------------------------------- stylised facts
def test_stylised_facts_on_normal_trading(normal: tuple[list[SymbolProfile], TickBatch]) -> None:
    profiles, b = normal
    counts = {}
    for p in profiles:
        s = b.select(p.symbol)
        counts[p.symbol] = len(s)
        gaps = np.diff(s.timestamp).astype(float)
        assert gaps.std() / gaps.mean() > 1.0, p.symbol  # over-dispersed arrivals
        if p.liquid:
            r = _minute_returns(s)
            x = r - r.mean()
            assert (x**4).mean() / (x**2).mean() ** 2 - 3.0 > 1.0, p.symbol  # heavy tails
            assert np.mean([_acf(np.abs(r), k) for k in range(1, 6)]) > 0.02, p.symbol  # clustering
            same_ms = np.mean(gaps == 0)
            assert 0.005 < same_ms < 0.15, p.symbol  # multi-fill orders exist but are rare
    liquid = [counts[p.symbol] for p in profiles if p.liquid]
    illiquid = [counts[p.symbol] for p in profiles if not p.liquid]
    assert max(illiquid) < min(liquid) and np.mean(illiquid) * 10 < np.mean(liquid)


def test_intraday_pattern_peaks_in_the_afternoon_utc() -> None:
    day0 = 1_699_920_000_000  # 2023-11-14 00:00 UTC
    b, _ = generate([LIQ], start_ms=day0, duration_s=86400, seed=3)
    hour = (b.timestamp - day0) // H
    per_hour = np.bincount(hour, minlength=24)
    assert per_hour[13:18].mean() > 1.3 * per_hour[1:6].mean()


def test_taker_sides_are_balanced_and_mildly_persistent(
    normal: tuple[list[SymbolProfile], TickBatch],
) -> None:
    s = normal[1].select("BTCUSDT").side.astype(float)
    assert abs(s.mean()) < 0.05
    assert 0.1 < _acf(s, 1) < 0.6


# ----------------------------------------------------------------------------- scenarios
def test_pump_and_dump_matches_its_label() -> None:
    params = dict(peak_multiplier=2.0, rise_s=120, dump_s=300, rate_multiplier=30, pre_accumulation=0)
    b, (lab,) = _run([Injection("pump_and_dump", "BRD/BTC", T0 + 3 * H + 12_345, params)])
    s = b.select("BRD/BTC")
    boundary = -(-(T0 + 3 * H + 12_345) // 60_000) * 60_000
    assert lab == Label("pump_and_dump", "BRD/BTC", lab.start_ms, boundary + 420_000)
    assert boundary <= lab.start_ms < boundary + 5_000 and lab.start_ms in set(s.timestamp.tolist())
    before = _in(s, lab.start_ms - H, lab.start_ms)
    rise = _in(s, lab.start_ms, boundary + 120_000)
    assert s.price[_in(s, lab.start_ms, lab.end_ms)].max() / np.median(s.price[before][-20:]) >= 1.1
    per_min_before = before.sum() / 60.0
    per_min_rise = rise.sum() / 2.0
    assert per_min_rise >= 10 * per_min_before
    assert s.side[rise].mean() > 0.6  # mostly market buys

    def rush(mask: np.ndarray) -> int:  # milliseconds with >= 3 buys
        ts = s.timestamp[mask & (s.side > 0)]
        _, n = np.unique(ts, return_counts=True)
        return int((n >= 3).sum())

    # rush orders: many per minute in the rise, at least 20x their rate in the hour before
    assert rush(rise) >= 20 and rush(rise) / 2.0 > 20 * max(rush(before), 1) / 60.0
    after = s.price[_in(s, lab.end_ms, lab.end_ms + 600_000)]
    assert np.median(after) < 1.3 * np.median(s.price[before][-20:])  # dumped


def test_pump_with_pre_accumulation_drifts_up_on_buys_before_the_label() -> None:
    params = dict(pre_accumulation=1, pre_accumulation_s=7200, pre_drift=0.04, pre_rate_multiplier=1.8)
    start = T0 + 4 * H
    b, (lab,) = _run([Injection("pump_and_dump", "BRD/BTC", start, params)])
    c, _ = _run([])
    s, cf = b.select("BRD/BTC"), c.select("BRD/BTC")
    assert lab.start_ms >= start
    pre_lo, pre_hi = lab.start_ms - 2 * H + 600_000, lab.start_ms - 60_000
    assert _in(s, pre_lo, pre_hi).sum() > 1.4 * _in(cf, pre_lo, pre_hi).sum()
    assert s.side[_in(s, pre_lo, pre_hi)].mean() > cf.side[_in(cf, pre_lo, pre_hi)].mean() + 0.1
    late = lab.start_ms - 600_000
    lift = np.log(
        np.median(s.price[_in(s, late, lab.start_ms)]) / np.median(cf.price[_in(cf, late, lab.start_ms)])
    )
    assert 0.02 < lift < 0.06


def test_flash_crash_drops_and_recovers() -> None:
    params = {"drop": 0.10, "fall_s": 20, "recover_s": 300, "recovery_fraction": 0.8, "rate_multiplier": 20}
    b, (lab,) = _run([Injection("flash_crash", "BTCUSDT", T0 + 2 * H, params)])
    s = b.select("BTCUSDT")
    assert lab.start_ms >= T0 + 2 * H and lab.end_ms == T0 + 2 * H + 320_000
    pre = np.median(s.price[_in(s, lab.start_ms - 60_000, lab.start_ms)])
    low = s.price[_in(s, lab.start_ms, lab.end_ms)].min()
    assert low / pre <= 0.95
    end = np.median(s.price[_in(s, lab.end_ms - 10_000, lab.end_ms)])
    assert (end - low) / (pre - low) > 0.6  # recovered most of the drop
    fall = _in(s, lab.start_ms, lab.start_ms + 20_000)
    assert s.side[fall].mean() < -0.5  # heavy selling
    assert s.quantity[fall].sum() / 20 > 10 * s.quantity[_in(s, lab.start_ms - H, lab.start_ms)].sum() / 3600


def test_volume_spike_flat_has_volume_but_no_price_move() -> None:
    params = {"rate_multiplier": 20, "size_multiplier": 1.0, "duration_s": 600}
    b, (lab,) = _run([Injection("volume_spike_flat", "BTCUSDT", T0 + 2 * H, params)])
    c, _ = _run([])
    s, cf = b.select("BTCUSDT"), c.select("BTCUSDT")
    win, prior = _in(s, lab.start_ms, lab.end_ms), _in(s, lab.start_ms - H, lab.start_ms)
    assert lab.end_ms - lab.start_ms <= 600_000
    assert s.quantity[win].sum() / 600 >= 10 * s.quantity[prior].sum() / 3600
    assert win.sum() / 600 >= 10 * prior.sum() / 3600
    assert abs(s.side[win].mean()) < 0.1  # balanced
    p = s.price[win]
    assert abs(np.log(p[-50:].mean() / p[:50].mean())) < 0.01
    cf_win = _in(cf, lab.start_ms, lab.end_ms)
    assert abs(np.log(np.median(p) / np.median(cf.price[cf_win]))) < 0.002  # same price path as without


@pytest.mark.parametrize("symbol", ["BTCUSDT", "BRD/BTC"])
def test_stale_price_is_constant_while_trades_continue(symbol: str) -> None:
    b, (lab,) = _run([Injection("stale_price", symbol, T0 + 2 * H, {"duration_s": 1800})])
    s = b.select(symbol)
    win = _in(s, lab.start_ms, lab.end_ms)
    assert lab.end_ms == T0 + 2 * H + 1_800_000
    assert win.sum() >= 100
    assert np.unique(s.price[win]).size == 1
    assert np.unique(s.price[_in(s, lab.end_ms, lab.end_ms + 1_800_000)]).size > 3
    assert np.unique(s.price[_in(s, lab.start_ms - 1_800_000, lab.start_ms)]).size > 3


def test_regime_shift_persists_after_the_label_and_leaves_the_past_alone() -> None:
    params = {"transition_s": 3600, "vol_factor": 2.5, "volume_factor": 3.0, "drift_per_h": 0.0}
    b, (lab,) = _run([Injection("regime_shift", "BTCUSDT", T0 + 2 * H, params)])
    c, _ = _run([])
    s, cf = b.select("BTCUSDT"), c.select("BTCUSDT")
    assert lab.end_ms == T0 + 3 * H
    after = (lab.end_ms, T0 + 6 * H)
    ratio = _in(s, *after).sum() / _in(cf, *after).sum()
    assert 2.5 < ratio < 3.5
    vol = np.std(_minute_returns(s)[-150:]) / np.std(_minute_returns(cf)[-150:])
    assert vol > 1.8
    past = s.timestamp < lab.start_ms
    np.testing.assert_array_equal(s.price[past], cf.price[cf.timestamp < lab.start_ms])


def test_regime_shift_drift_moves_the_level() -> None:
    params = {"transition_s": 1800, "vol_factor": 1.0, "volume_factor": 1.0, "drift_per_h": 0.02}
    b, _ = _run([Injection("regime_shift", "BTCUSDT", T0 + H, params)])
    c, _ = _run([])
    s, cf = b.select("BTCUSDT"), c.select("BTCUSDT")
    np.testing.assert_array_equal(s.timestamp, cf.timestamp)  # volume untouched
    gap = np.log(s.price[-100:] / cf.price[-100:]).mean()
    assert gap == pytest.approx(0.02 * (5 - 0.25), abs=0.005)


def test_labels_start_on_an_anomalous_tick_and_follow_the_injection_order() -> None:
    inj = [
        Injection(name, sym, T0 + (1 + i) * H)
        for i, (name, sym) in enumerate(zip(SCENARIOS, ["BRD/BTC", "BTCUSDT"] * 3, strict=False))
    ]
    b, labels = _run(inj, hours=8)
    assert [lab.scenario for lab in labels] == list(SCENARIOS)
    for inj_, lab in zip(inj, labels, strict=True):
        s = b.select(lab.symbol)
        assert inj_.start_ms <= lab.start_ms < lab.end_ms <= T0 + 8 * H
        begin = -(-inj_.start_ms // 60_000) * 60_000 if lab.scenario == "pump_and_dump" else inj_.start_ms
        assert lab.start_ms == s.timestamp[s.timestamp >= begin][0]  # the first tick of the anomaly


# ----------------------------------------------------------------------------- independence
def test_adding_a_symbol_or_an_injection_elsewhere_changes_nothing() -> None:
    alone, _ = generate([LIQ], start_ms=T0, duration_s=7200, seed=9)
    crash = [Injection("flash_crash", "BRD/BTC", T0 + H)]
    both, _ = generate([ILL, LIQ], start_ms=T0, duration_s=7200, seed=9, injections=crash)
    assert _same(alone, both.select("BTCUSDT"))


def test_an_injection_does_not_change_the_ticks_before_it() -> None:
    plain, _ = generate([ILL], start_ms=T0, duration_s=7200, seed=9)
    spike = [Injection("volume_spike_flat", "BRD/BTC", T0 + H)]
    spiked, (lab,) = generate([ILL], start_ms=T0, duration_s=7200, seed=9, injections=spike)
    n = int((plain.timestamp < lab.start_ms).sum())
    assert n > 100
    for col in ("timestamp", "price", "quantity", "side"):
        np.testing.assert_array_equal(getattr(plain, col)[:n], getattr(spiked, col)[:n])


def test_default_profiles() -> None:
    small, big = default_profiles(4, seed=1), default_profiles(30, seed=1, illiquid_fraction=0.5)
    names = [p.symbol for p in big]
    assert {"BTCUSDT", "BRD/BTC", "XYZBTC"} <= set(names) and len(set(names)) == 30
    assert sum(p.liquid for p in big) == 15
    for p in big:
        lo, hi = (2.0, 10.0) if p.liquid else (0.02, 0.5)
        assert lo <= p.trades_per_s <= hi and p.base_price > 0 and p.mean_qty > 0
        tick_from_dict({"symbol": p.symbol, "price": p.base_price, "quantity": p.mean_qty, "timestamp": T0})
    assert set(small) <= set(big)  # a profile depends on (seed, symbol) only
    assert default_profiles(4, seed=1) == small and default_profiles(4, seed=2) != small
    assert all(p.liquid for p in default_profiles(3, seed=1, illiquid_fraction=0.0))


def test_random_injections_are_spread_and_reproducible() -> None:
    profiles = default_profiles(8, seed=2)
    kw: dict[str, Any] = {"start_ms": T0, "duration_s": 24 * 3600, "seed": 4, "per_symbol_day": 4.0}
    inj = random_injections(profiles, **kw)
    assert inj == random_injections(profiles, **kw) and len(inj) >= 8
    assert {i.scenario for i in inj} == set(SCENARIOS)
    assert [i.start_ms for i in inj] == sorted(i.start_ms for i in inj)
    by_symbol: dict[str, list[tuple[float, float]]] = {}
    for i in inj:
        before, after = scn.footprint(i.scenario, i.params)
        assert i.start_ms - before * 1000 >= T0 + H
        assert i.start_ms + after * 1000 <= T0 + 24 * H
        if i.scenario == "pump_and_dump":
            assert i.start_ms % 60_000 == 0
        by_symbol.setdefault(i.symbol, []).append((i.start_ms - before * 1000, i.start_ms + after * 1000))
    for spans in by_symbol.values():
        spans.sort()
        assert all(b0 - a1 >= 2 * H for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False))
    fewer = random_injections(profiles[:3], **kw)
    assert fewer == [i for i in inj if i.symbol in {p.symbol for p in profiles[:3]}]
    only = random_injections(profiles, **{**kw, "scenarios": ("stale_price",)})
    assert {i.scenario for i in only} == {"stale_price"}
    batch, labels = generate(profiles, start_ms=T0, duration_s=24 * 3600, injections=inj, seed=4)
    assert len(labels) == len(inj) and all(T0 <= lab.start_ms <= lab.end_ms <= T0 + 24 * H for lab in labels)
    assert len(batch) > 0


# ----------------------------------------------------------------------------- validation
def _gen(**kw: Any) -> None:
    args: dict[str, Any] = {"start_ms": T0, "duration_s": 60.0, "seed": 1, "injections": ()}
    generate(kw.pop("profiles", PAIR), **{**args, **kw})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"start_ms": 1_700_000_000}, "start_ms"),
        ({"profiles": []}, "profiles"),
        ({"profiles": [LIQ, LIQ]}, "profiles"),
        ({"profiles": [SymbolProfile("bad symbol", 1.0, 1.0, 1.0, True)]}, r"profiles\[0\]"),
        ({"profiles": [SymbolProfile("X", -1.0, 1.0, 1.0, True)]}, r"profiles\[0\]"),
        ({"profiles": [SymbolProfile("X", 1.0, 0.0, 1.0, True)]}, r"profiles\[0\].trades_per_s"),
        ({"injections": [Injection("rug_pull", "BTCUSDT", T0)]}, r"injections\[0\].scenario"),
        ({"injections": [Injection("stale_price", "ETHUSDT", T0)]}, r"injections\[0\].symbol"),
        ({"injections": [Injection("stale_price", "BTCUSDT", T0 - 1)]}, r"injections\[0\].start_ms"),
        ({"injections": [Injection("stale_price", "BTCUSDT", T0 + 60_000)]}, r"injections\[0\].start_ms"),
        ({"injections": [Injection("pump_and_dump", "BTCUSDT", T0 + 50_000)]}, r"injections\[0\].start_ms"),
        ({"injections": [Injection("stale_price", "BTCUSDT", T0, {"durations": 5})]}, "durations"),
        ({"injections": [Injection("stale_price", "BTCUSDT", T0, {"duration_s": -5})]}, "duration_s"),
        ({"injections": [Injection("flash_crash", "BTCUSDT", T0, {"drop": float("inf")})]}, "drop"),
        ({"injections": [Injection("pump_and_dump", "BTCUSDT", T0, {"pre_accumulation": 0.5})]}, "pre_acc"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _gen(**kwargs)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: default_profiles(0, seed=1), "n_symbols"),
        (lambda: default_profiles(3, seed=1, illiquid_fraction=1.5), "illiquid_fraction"),
        (lambda: default_profiles(3, seed=-2), "seed"),
        (
            lambda: random_injections(PAIR, start_ms=T0, duration_s=3600, seed=1, per_symbol_day=-1),
            "per_symbol",
        ),
        (
            lambda: random_injections(PAIR, start_ms=T0, duration_s=3600, seed=1, scenarios=("x",)),
            "scenarios",
        ),
        (lambda: random_injections(PAIR, start_ms=T0, duration_s=3600, seed=1, warmup_s=-1), "warmup_s"),
    ],
)
def test_other_functions_reject_bad_arguments(call: Any, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


# ----------------------------------------------------------------------------- properties
@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 2**63),
    duration_s=st.floats(1.0, 900.0),
    offset_ms=st.integers(0, 59_999),
    scenario=st.sampled_from(SCENARIOS),
)
def test_any_small_run_is_valid(seed: int, duration_s: float, offset_ms: int, scenario: str) -> None:
    start = T0 + offset_ms
    inj = [Injection(scenario, "BTCUSDT", start)] if scenario != "pump_and_dump" or duration_s > 61 else []
    b, labels = generate(PAIR, start_ms=start, duration_s=duration_s, injections=inj, seed=seed)
    end = start + round(duration_s * 1000)
    assert (np.diff(b.timestamp) >= 0).all() and (b.timestamp >= start).all() and (b.timestamp < end).all()
    assert (b.price > 0).all() and (b.quantity > 0).all() and np.isfinite(b.price).all()
    assert all(start <= lab.start_ms <= lab.end_ms <= end for lab in labels)


def test_linear_recurrence_matches_the_loop() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 1.5, 1000), rng.normal(size=1000)
    x, want = 0.3, []
    for ai, bi in zip(a, b, strict=True):
        x = ai * x + bi
        want.append(x)
    np.testing.assert_allclose(scn.linear_recurrence(a, b, 0.3), want, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- stress profile sets
LARGE_TICK = SymbolProfile("LTK/BTC", 4e-7, 0.3, 5e4, False, tick_size=SATOSHI)


def test_a_large_tick_coin_trades_on_its_grid_and_bounces_between_bid_and_ask() -> None:
    b, _ = generate([LARGE_TICK], start_ms=T0, duration_s=6 * 3600, seed=3)
    units = b.price / SATOSHI
    assert np.allclose(units, np.round(units), rtol=0, atol=1e-6) and units.min() >= 1
    # One satoshi is 2.5 % of the price and the half-spread 0.1 %: rounded to the nearest, buys and
    # sells would print at one level for hours; on the grid a buy prints at least as high as a sell
    # of the same second, and most price changes are one tick (the bid-ask bounce).
    moves = np.abs(np.diff(np.round(units)))
    assert (moves[moves > 0] == 1).mean() > 0.8
    assert (moves > 0).mean() > 0.2
    sec = b.timestamp // 1000
    for s in np.unique(sec)[:2000]:
        m = sec == s
        buys, sells = b.price[m & (b.side > 0)], b.price[m & (b.side < 0)]
        if buys.size and sells.size:
            assert buys.min() >= sells.max() - 1.5 * SATOSHI  # the book may walk within a second


def test_a_stale_price_on_a_large_tick_coin_stays_on_one_level() -> None:
    b, (lab,) = generate([LARGE_TICK], start_ms=T0, duration_s=6 * 3600, seed=3,
                         injections=[Injection("stale_price", "LTK/BTC", T0 + 2 * H, {"duration_s": 1800})])
    win = _in(b, lab.start_ms, lab.end_ms)
    assert win.sum() >= 100 and np.unique(b.price[win]).size == 1


@pytest.mark.parametrize("kind", ["large_tick", "sparse"])
def test_stress_profiles_lie_outside_the_default_ranges(kind: str) -> None:
    stress, normal = stress_profiles(kind, 10, seed=4), default_profiles(20, seed=4)
    assert stress == stress_profiles(kind, 10, seed=4) and all(not p.liquid for p in stress)
    default_ill = [p for p in normal if not p.liquid]
    if kind == "large_tick":
        assert max(p.base_price for p in stress) < min(p.base_price for p in default_ill)
        assert all(p.tick_size == SATOSHI and p.tick_size / p.base_price >= 0.005 for p in stress)
    else:
        assert max(p.trades_per_s for p in stress) < min(p.trades_per_s for p in default_ill)
    assert stress_profiles("default", 20, seed=4) == normal
    with pytest.raises(ValueError, match="kind"):
        stress_profiles("busy", 3, seed=4)
