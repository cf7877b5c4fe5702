"""Tests of models.pipeline.Pipeline.process: batch-boundary independence, state round trips,
deterministic alert ids, cooldown, offset de-duplication, detection of an injected pump and the
false-alarm rate on quiet synthetic markets."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.alerts import alert_id
from models.detectors.statistical import StatisticalConfig
from models.ensemble import MEMBERS, ModelBundle, RecordingBundle
from models.pipeline import (
    MAX_TICKS_PER_STEP,
    RECENT_TRADE_IDS,
    STAT_ONLY_VERSION,
    Pipeline,
    PipelineConfig,
    Position,
    SymbolSnapshot,
    last_scored_by_symbol,
    record_positions,
    symbols_of,
)
from models.synthetic import Injection, Label, SymbolProfile, default_profiles, generate
from models.ticks import Tick
from tests.models.test_ensemble import tiny_bundle

T0 = 1_700_000_000_000
H = 3_600_000
PROFILES = [
    SymbolProfile("AAAUSDT", 50.0, 0.8, 2.0, True),
    SymbolProfile("DDD/BTC", 3e-5, 0.2, 500.0, False),
    SymbolProfile("EEEBTC", 2e-4, 0.3, 80.0, False),
]


@functools.cache
def scenario() -> tuple[tuple[Tick, ...], tuple[Label, ...]]:
    """1 h of three symbols: a pump on DDD/BTC after 25 min, a flash crash on AAAUSDT after 35 min."""
    injections = [
        Injection("pump_and_dump", "DDD/BTC", T0 + 25 * 60_000, {"pre_accumulation": 0.0}),
        Injection("flash_crash", "AAAUSDT", T0 + 35 * 60_000),
    ]
    batch, labels = generate(PROFILES, start_ms=T0, duration_s=3600, injections=injections, seed=9)
    return tuple(batch.ticks()), tuple(labels)


def bundle_for(with_bundle: bool) -> ModelBundle | None:
    return tiny_bundle() if with_bundle else None


def run_batches(
    pipeline: Pipeline,
    ticks: tuple[Tick, ...],
    cuts: list[int],
    round_trip: bool = False,
    snaps: dict[str, SymbolSnapshot] | None = None,
) -> dict[str, Any]:
    """Process ``ticks`` cut at ``cuts``; everything observable, in comparable (JSON) form."""
    snaps = {} if snaps is None else snaps
    alerts: list[dict[str, Any]] = []
    scores: list[float | None] = []
    bounds = [0, *sorted(set(cuts)), len(ticks)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if round_trip:
            snaps = {
                s: SymbolSnapshot.from_state(json.loads(json.dumps(snap.to_state(), allow_nan=False)), pipeline.config)
                for s, snap in snaps.items()
            }
        res = pipeline.process(snaps, ticks[lo:hi])
        assert res.skipped == 0 and len(res.scores) == hi - lo
        alerts.extend(a.to_dict() for a in res.alerts)
        scores.extend(res.scores)
    return {
        "alerts": alerts,
        "scores": scores,
        "state": {s: json.loads(json.dumps(snap.to_state(), allow_nan=False)) for s, snap in sorted(snaps.items())},
    }


@functools.cache
def one_batch(with_bundle: bool) -> dict[str, Any]:
    ticks, _ = scenario()
    return run_batches(Pipeline(bundle=bundle_for(with_bundle)), ticks, [])


cut_lists = st.lists(st.integers(1, 10**9), max_size=12)


# ---------------------------------------------------------------------------
# (a) batch boundaries, (b) state round trip
# ---------------------------------------------------------------------------
def test_scenario_is_not_trivial() -> None:
    for with_bundle in (False, True):
        ref = one_batch(with_bundle)
        assert len(ref["alerts"]) >= 2, with_bundle
        assert all(s is not None for s in ref["scores"])


@settings(max_examples=8)
@given(cuts=cut_lists, with_bundle=st.booleans())
def test_result_independent_of_batch_boundaries(cuts: list[int], with_bundle: bool) -> None:
    ticks, _ = scenario()
    got = run_batches(Pipeline(bundle=bundle_for(with_bundle)), ticks, [c % len(ticks) for c in cuts])
    assert got == one_batch(with_bundle)


def test_single_tick_batches_around_the_alerts() -> None:
    """The extreme cut: every tick of the busiest stretch in a batch of its own."""
    ticks, _ = scenario()
    ref = one_batch(True)
    first = min(a["event_time"] for a in ref["alerts"])
    start = next(i for i, t in enumerate(ticks) if t.timestamp >= first - 60_000)
    cuts = list(range(start, min(len(ticks), start + 150)))
    assert run_batches(Pipeline(bundle=tiny_bundle()), ticks, cuts) == ref


@settings(max_examples=8)
@given(cuts=cut_lists, with_bundle=st.booleans())
def test_state_json_round_trip_between_batches(cuts: list[int], with_bundle: bool) -> None:
    ticks, _ = scenario()
    pipeline = Pipeline(bundle=bundle_for(with_bundle))
    got = run_batches(pipeline, ticks, [c % len(ticks) for c in cuts], round_trip=True)
    assert got == one_batch(with_bundle)


def test_a_batch_longer_than_a_step_is_folded_in_steps_that_change_nothing() -> None:
    """Pipeline.process folds a long batch MAX_TICKS_PER_STEP ticks at a time: the same result,
    indices included, as calls of at most 1,000 ticks, with refusals and redeliveries past the
    first step."""
    base, _ = scenario()
    ticks = [dataclasses.replace(t, exchange="x", trade_id=k) for k, t in enumerate(base)]
    ticks[5000] = ticks[4999]  # a duplicate trade id: refused
    ticks[6000] = dataclasses.replace(ticks[6000], timestamp=ticks[6000].timestamp - 3_600_000)  # far behind
    positions = [Position("t", 0, k) for k in range(len(ticks))]
    positions[4500] = positions[4499]  # a redelivered record: skipped
    assert len(ticks) > MAX_TICKS_PER_STEP + 2000

    def observed(cuts: list[int]) -> dict[str, Any]:
        pipeline, snaps = Pipeline(bundle=tiny_bundle()), {}
        out: dict[str, Any] = {"alerts": [], "scores": [], "rows": [], "row_ticks": [], "rejected": [], "skipped": 0,
                               "touched": set()}
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            res = pipeline.process(snaps, ticks[lo:hi], positions[lo:hi])
            out["alerts"] += [a.to_dict() for a in res.alerts]
            out["scores"] += res.scores
            out["rows"] += res.model_rows
            out["row_ticks"] += [lo + i for i in res.model_row_ticks]
            out["rejected"] += [(lo + i, reason) for i, reason, _ in res.rejected]
            out["skipped"] += res.skipped
            out["touched"] |= res.touched
        out["state"] = {s: json.dumps(snap.to_state(), sort_keys=True) for s, snap in snaps.items()}
        return out

    whole = observed([0, len(ticks)])
    assert whole == observed([*range(0, len(ticks), 1000), len(ticks)])
    assert whole["rejected"] == [(5000, "duplicate"), (6000, "out_of_order")] and whole["skipped"] == 1
    assert len(whole["rows"]) == len(whole["row_ticks"]) == len(ticks) - 3 and whole["alerts"]


def test_a_recording_bundle_keeps_the_member_rows_of_every_step_of_a_batch() -> None:
    """The worker and the NAB command read one row of member probabilities per scored tick of a whole
    batch, which Pipeline.process scores in one model call per step: the same rows as batches of half
    a step, read after each."""
    ticks, _ = scenario()
    assert len(ticks) > 4 * MAX_TICKS_PER_STEP
    whole = RecordingBundle.wrap(tiny_bundle())
    res = Pipeline(bundle=whole).process({}, ticks)
    probs, log_odds = whole.recorded_probs, whole.recorded_log_odds
    assert probs is not None and log_odds is not None
    assert probs.shape == log_odds.shape == (len(res.model_rows), len(MEMBERS))
    small = RecordingBundle.wrap(tiny_bundle())
    pipeline, snaps = Pipeline(bundle=small), {}
    parts, part_log_odds = [], []
    for lo in range(0, len(ticks), MAX_TICKS_PER_STEP // 2):
        small.reset()
        pipeline.process(snaps, ticks[lo:lo + MAX_TICKS_PER_STEP // 2])
        got, got_log_odds = small.recorded_probs, small.recorded_log_odds
        if got is not None and got_log_odds is not None:
            parts.append(got)
            part_log_odds.append(got_log_odds)
    assert np.array_equal(probs, np.concatenate(parts))
    assert np.array_equal(log_odds, np.concatenate(part_log_odds))
    whole.reset()
    assert whole.recorded_probs is None and whole.recorded_log_odds is None


def test_a_batch_without_model_rows_gives_the_same_result_otherwise() -> None:
    """The worker asks for no model input rows: everything else is the same, state included."""
    ticks, _ = scenario()
    assert len(ticks) > 2 * MAX_TICKS_PER_STEP
    with_rows, without = Pipeline(bundle=tiny_bundle()), Pipeline(bundle=tiny_bundle())
    snaps_with: dict[str, SymbolSnapshot] = {}
    snaps_without: dict[str, SymbolSnapshot] = {}
    a = with_rows.process(snaps_with, ticks)
    b = without.process(snaps_without, ticks, model_rows=False)
    assert a.model_rows and len(a.model_rows) == len(a.model_row_ticks)
    assert b.model_rows == [] and b.model_row_ticks == []
    assert [x.to_dict() for x in a.alerts] == [x.to_dict() for x in b.alerts] and a.alerts
    assert (a.scores, a.touched, a.skipped, a.rejected) == (b.scores, b.touched, b.skipped, b.rejected)
    assert {s: snap.to_state() for s, snap in snaps_with.items()} == {
        s: snap.to_state() for s, snap in snaps_without.items()}


# ---------------------------------------------------------------------------
# (c) ids, (d) cooldown
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("with_bundle", [False, True])
def test_alert_ids_are_deterministic(with_bundle: bool) -> None:
    ticks, _ = scenario()
    bundle = bundle_for(with_bundle)
    a = Pipeline(bundle=bundle).process({}, ticks).alerts
    b = Pipeline(bundle=bundle).process({}, ticks).alerts
    assert [x.alert_id for x in a] == [x.alert_id for x in b] and a
    version = STAT_ONLY_VERSION if bundle is None else bundle.version
    for x in a:
        assert x.alert_id == alert_id(x.symbol, x.event_time, version) and x.model_version == version
    assert len({x.alert_id for x in a}) == len(a)


@pytest.mark.parametrize("cooldown_s", [0.0, 60.0, 300.0, 1800.0])
def test_cooldown_in_event_time(cooldown_s: float) -> None:
    ticks, _ = scenario()
    # Novelty gating off: it is what would keep a symbol's rule from firing again within the
    # window, and this test needs repeated alerts of one symbol to check their spacing.
    config = PipelineConfig(alert_threshold=0.3, cooldown_s=cooldown_s,
                            statistical=StatisticalConfig(novelty_window_s=0.0))
    pipeline = Pipeline(config)
    snaps: dict[str, SymbolSnapshot] = {}
    res = pipeline.process(snaps, ticks)
    by_symbol: dict[str, list[int]] = collections.defaultdict(list)
    for a in res.alerts:
        by_symbol[a.symbol].append(a.event_time)
    for times in by_symbol.values():
        assert all(b - a >= cooldown_s * 1000 for a, b in zip(times, times[1:], strict=False)), times
    # Not vacuous: ticks above the threshold were there, and the cooldown dropped some of them.
    above = sum(1 for s in res.scores if s is not None and s >= config.alert_threshold)
    if cooldown_s == 0.0:
        assert len(res.alerts) == above
    else:
        assert len(res.alerts) < above
    assert sum(len(v) >= 2 for v in by_symbol.values()) >= 1 or cooldown_s == 1800.0
    for sym, snap in snaps.items():
        assert snap.alerts == len(by_symbol.get(sym, []))
        if by_symbol.get(sym):
            assert snap.last_alert_ms == by_symbol[sym][-1]


# ---------------------------------------------------------------------------
# (e) offsets
# ---------------------------------------------------------------------------
def test_redelivered_ticks_are_skipped() -> None:
    ticks, _ = scenario()
    positions = [Position("ticks", i % 3, i) for i in range(len(ticks))]
    pipeline = Pipeline(bundle=tiny_bundle())
    snaps: dict[str, SymbolSnapshot] = {}
    first = pipeline.process(snaps, ticks, positions)
    assert first.skipped == 0 and first.alerts
    before = {s: json.dumps(v.to_state()) for s, v in snaps.items()}
    again = pipeline.process(snaps, ticks, positions)
    assert again.skipped == len(ticks)
    assert again.alerts == [] and again.scores == [None] * len(ticks) and again.touched == set()
    assert {s: json.dumps(v.to_state()) for s, v in snaps.items()} == before


def test_partial_redelivery_equals_one_pass() -> None:
    """A crash after the table write: the batch is redelivered together with new ticks."""
    ticks, _ = scenario()
    positions = [Position("ticks", 0, 1000 + i) for i in range(len(ticks))]
    ref_snaps: dict[str, SymbolSnapshot] = {}
    ref = Pipeline().process(ref_snaps, ticks, positions)
    snaps: dict[str, SymbolSnapshot] = {}
    k, m = len(ticks) // 2, len(ticks) // 3
    part1 = Pipeline().process(snaps, ticks[:k], positions[:k])
    part2 = Pipeline().process(snaps, ticks[m:], positions[m:])  # ticks m..k-1 again
    assert part2.skipped == k - m
    assert [a.to_dict() for a in part1.alerts + part2.alerts] == [a.to_dict() for a in ref.alerts]
    assert part2.scores[: k - m] == [None] * (k - m)
    assert part1.scores + part2.scores[k - m :] == ref.scores
    assert {s: v.to_state() for s, v in snaps.items()} == {s: v.to_state() for s, v in ref_snaps.items()}


@settings(max_examples=60, deadline=None)
@given(trades=st.lists(st.tuples(st.integers(0, 80), st.sampled_from(["a", "a", "a", "b"])), min_size=1, max_size=150),
       cuts=st.lists(st.integers(0, 150), max_size=6))
def test_duplicate_trade_ids_are_those_of_the_last_recent_ids(trades: list[tuple[int, str]], cuts: list[int]) -> None:
    """A trade id is refused exactly when it is among the last RECENT_TRADE_IDS ids applied from the same
    exchange (the plain rule the bound on the largest id only shortcuts), across state round trips."""
    refused_ref: list[int] = []
    recent: list[int] = []
    exchange: str | None = None
    for k, (tid, ex) in enumerate(trades):
        if ex == exchange and tid in recent:
            refused_ref.append(k)
            continue
        if ex != exchange:
            recent, exchange = [], ex
        recent = [*recent, tid][-RECENT_TRADE_IDS:]
    ticks = [Tick("AAAUSDT", 100.0, 1.0, T0 + 1000 * k, exchange=ex, trade_id=tid)
             for k, (tid, ex) in enumerate(trades)]
    pipeline, snaps = Pipeline(), {}
    refused: list[int] = []
    bounds = sorted({0, len(ticks), *(c % (len(ticks) + 1) for c in cuts)})
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        res = pipeline.process(snaps, ticks[lo:hi])
        refused += [lo + i for i, reason, _ in res.rejected if reason == "duplicate"]
        # A restart between batches: the state as JSON, the bound derived again from the list.
        snaps = {s: SymbolSnapshot.from_state(json.loads(json.dumps(v.to_state())), pipeline.config)
                 for s, v in snaps.items()}
    assert refused == refused_ref
    assert snaps["AAAUSDT"].trade_ids == recent


# ---------------------------------------------------------------------------
# (f) detection, (g) quiet market
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("with_bundle", [False, True])
def test_injected_pump_raises_an_alert_inside_its_window(with_bundle: bool) -> None:
    ticks, labels = scenario()
    pump = next(lb for lb in labels if lb.scenario == "pump_and_dump")
    res = Pipeline(bundle=bundle_for(with_bundle)).process({}, ticks)
    hits = [a for a in res.alerts if a.symbol == pump.symbol and pump.start_ms <= a.event_time <= pump.end_ms]
    assert hits, [(a.symbol, a.event_time) for a in res.alerts]
    a = hits[0]
    assert a.top_features and all({"feature", "value", "z"} <= set(f) for f in a.top_features)
    assert a.detectors and set(a.detectors) == ({"statistical"} if not with_bundle else set(MEMBERS))
    assert all(0.0 <= d["score"] <= 1.0 and isinstance(d["vote"], bool) for d in a.detectors.values())
    assert a.severity != "none" and a.score >= a.threshold
    d = a.to_dict()
    assert json.loads(json.dumps(d)) == d


def test_few_alerts_on_a_quiet_market() -> None:
    """No injections: 6 default symbols (3 liquid at 2-4 trades/s, 3 illiquid) for 1 h of warm-up
    then 6 h measured, stat-only (the calibrated ensemble is only as good as its training data).

    Bound: measured over seeds 1-5 of this set-up (default_profiles(6, seed) and generate(seed)),
    the measured 6 h held 4, 5, 1, 1, 1 alerts (at most 3.3 per symbol-day, at most 3 on one
    symbol), all on honest heavy-tailed moves of the liquid pairs (rules z_price_change_pct,
    z_momentum, z_buy_sell_imbalance, z_volume_ratio). The assertion allows 4 per symbol-day (6 in
    the 1.5 symbol-days measured) and 3 per symbol, which every measured seed meets; a noisy or
    unprotected detector gives tens to hundreds here. Seed 3 is run because it is the cheapest of the
    five (fewest ticks: 193k against 241k-320k), not for its alert count (1).
    """
    profiles = default_profiles(6, seed=3)
    batch, _ = generate(profiles, start_ms=T0, duration_s=7 * 3600, seed=3)
    res = Pipeline().process({}, list(batch.ticks()))
    measured = [a for a in res.alerts if a.event_time >= T0 + H]
    symbol_days = 6 * 6 / 24
    assert len(measured) <= 4 * symbol_days, [(a.symbol, a.event_time, a.rule) for a in measured]
    per_symbol = collections.Counter(a.symbol for a in measured)
    assert max(per_symbol.values(), default=0) <= 3, per_symbol


@pytest.mark.parametrize("seed", [3, 5])
def test_a_feed_outage_is_no_anomaly(seed: int) -> None:
    """Every symbol goes silent for 2 h (a dropped WebSocket, a gap between recorded files), then
    trades resume where the market has moved meanwhile. Past ``max_gap_s`` the feature engine restarts
    its bars and warms up again, and its rate baselines are bias-corrected, so the resumption is no
    burst: no alert while the symbols warm up, and no more than one alert more after the gap than the
    same ticks without it. The gap is cut out of the ticks of the quiet market above, stat-only.

    Measured over seeds 1-5 (2026-12-06): 4 alerts in the 2 h after the resumption with the gap against
    3 without, none in the warm-up. The one extra is seed 5's (run here): an illiquid pair's
    ``z_momentum`` 18.6 min after the resumption. The shipped model on a 12 h, 8-symbol version
    (``cryptotrace backtest`` of ``cryptotrace synth --events-per-day 0 --seed 3301`` with 5-8 h cut
    out) raised the same single alert with and without the gap.
    """
    profiles = default_profiles(6, seed=seed)
    batch, _ = generate(profiles, start_ms=T0, duration_s=7 * 3600, seed=seed)
    ticks = list(batch.ticks())
    gap_lo, gap_hi = T0 + 3 * H, T0 + 5 * H
    gapped = [t for t in ticks if not gap_lo <= t.timestamp < gap_hi]
    assert {t.symbol for t in gapped if t.timestamp >= gap_hi} == {p.symbol for p in profiles}
    after_gap = [a for a in Pipeline().process({}, gapped).alerts if a.event_time >= gap_hi]
    unbroken = [a for a in Pipeline().process({}, ticks).alerts if a.event_time >= gap_hi]
    warmup_ms = PipelineConfig().features.warmup_s * 1000
    assert not [a for a in after_gap if a.event_time < gap_hi + warmup_ms], after_gap
    assert len(after_gap) <= len(unbroken) + 1, (after_gap, unbroken)


def test_a_scored_tick_never_scores_zero_which_marks_the_grace_period() -> None:
    """A stacker far below every threshold (its best score ~1e-9, which rounds to 0 at 6 decimals)
    still gives each scored tick SCORE_FLOOR, so 0 keeps meaning "in the grace period"."""
    import dataclasses

    from models.pipeline import SCORE_FLOOR

    ticks, _ = scenario()
    base = tiny_bundle()
    bias = -(base.stack_clip * sum(abs(w) for w in base.stack_weights) + 20.0)  # every row <= sigmoid(-20)
    pipeline = Pipeline(bundle=dataclasses.replace(base, combination="stacked", stack_bias=bias))
    scores = [s for s in pipeline.process({}, ticks[:20_000]).scores if s is not None]
    reference = [s for s in Pipeline().process({}, ticks[:20_000]).scores if s is not None]
    grace = [s == 0.0 for s in reference]  # the statistical layer alone: 0 exactly in the grace period
    assert 0 < sum(grace) < len(grace) - 1000
    assert [s == 0.0 for s in scores] == grace
    assert {s for s in scores if s != 0.0} == {SCORE_FLOOR}


def test_the_workers_per_record_helpers() -> None:
    positions = record_positions("ticks", 3, 7 << 16, 3)
    assert [(p.topic, p.partition, p.offset) for p in positions] == [("ticks", 3, (7 << 16) + j) for j in range(3)]
    assert record_positions("ticks", 0, 0, 0) == []
    ticks = [Tick(s, 1.0, 1.0, T0 + i) for i, s in enumerate(["A", "B", "A", "C", "B"])]
    assert symbols_of(ticks) == {"A", "B", "C"} and symbols_of([]) == set()
    # Ranks among the scored ticks (None = skipped): A's last scored is the 3rd scored tick, C is never scored.
    assert last_scored_by_symbol(ticks, [0.1, 0.2, 0.3, None, None]) == {"A": 2, "B": 1}
    assert last_scored_by_symbol(ticks, [None] * 5) == {}
