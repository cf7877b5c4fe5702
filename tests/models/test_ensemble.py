"""Tests of models.ensemble (severity, confidence, verdicts) with and without a small fitted bundle.

``tiny_bundle()`` trains a deliberately small ensemble (6 low-rate symbols x 3 h of synthetic
ticks with frequent injected events, 20 trees): a few seconds, cached for the session and
also used by test_pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import _native, ensemble
from models.detectors.statistical import MODEL_INPUT_NAMES
from models.ensemble import (
    COMBINATIONS,
    LEGACY_STACK_CLIP,
    LOGIT_BOUND,
    MEMBERS,
    ModelBundle,
    Platt,
    confidence_of,
    logit,
    median_of_three,
    severity_of,
    sigmoid,
    stat_logit,
    verdicts,
)
from models.evaluation import pick_threshold, sweep_and_pick
from models.synthetic import Label, SymbolProfile, generate, random_injections
from models.training import (
    Dataset,
    QuietAlarms,
    TrainConfig,
    Window,
    build_dataset,
    choose_rule,
    choose_threshold,
    cross_validated_report,
    fit_bundle,
    rule_key,
)

T0 = 1_700_000_000_000
SEVERITIES = ("none", "low", "medium", "high", "critical")
# Low trade rates keep the data set small (~30k rows) while every scenario still shows.
PROFILES = [
    SymbolProfile("AAAUSDT", 50.0, 0.6, 2.0, True),
    SymbolProfile("BBBUSDT", 2.0, 0.4, 100.0, True),
    SymbolProfile("CCCUSDT", 700.0, 0.5, 0.5, True),
    SymbolProfile("DDD/BTC", 3e-5, 0.2, 500.0, False),
    SymbolProfile("EEEBTC", 2e-4, 0.15, 80.0, False),
    SymbolProfile("FFF/BTC", 8e-6, 0.25, 2000.0, False),
]
TRAIN_SEED = 4


@functools.cache
def training_data() -> tuple[Dataset, tuple[Label, ...]]:
    injections = random_injections(
        PROFILES, start_ms=T0, duration_s=3 * 3600, seed=TRAIN_SEED, per_symbol_day=48, warmup_s=3600,
        scenarios=("pump_and_dump", "flash_crash", "volume_spike_flat"),
    )
    batch, labels = generate(PROFILES, start_ms=T0, duration_s=3 * 3600, injections=injections, seed=TRAIN_SEED)
    windows = [Window(lb.scenario, lb.symbol, lb.start_ms, lb.end_ms) for lb in labels]
    return build_dataset(batch.ticks(), windows), tuple(labels)


@functools.cache
def tiny_bundle() -> ModelBundle:
    data, _ = training_data()
    return fit_bundle(data, TrainConfig(n_estimators=20))


# ---------------------------------------------------------------------------
# Severity and confidence
# ---------------------------------------------------------------------------
unit = st.floats(0.0, 1.0)


@given(threshold=unit, a=unit, b=unit)
def test_severity_is_monotone_and_none_below_threshold(threshold: float, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    s_lo, s_hi = severity_of(lo, threshold), severity_of(hi, threshold)
    assert s_lo in SEVERITIES and s_hi in SEVERITIES
    assert SEVERITIES.index(s_lo) <= SEVERITIES.index(s_hi)
    assert (s_lo == "none") == (lo < threshold)
    assert severity_of(1.0, threshold) == "critical"


def test_severity_bands() -> None:
    # threshold 0.4: span 0.2; low [0.4, 0.5), medium [0.5, 0.6), high [0.6, 0.9), critical >= 0.9.
    got = [severity_of(s, 0.4) for s in (0.39, 0.4, 0.49, 0.5, 0.59, 0.6, 0.89, 0.9, 1.0)]
    assert got == ["none", "low", "low", "medium", "medium", "high", "high", "critical", "critical"]


@given(
    score=unit,
    threshold=unit,
    probs=st.lists(unit, min_size=0, max_size=3),
)
def test_confidence_in_unit_interval(score: float, threshold: float, probs: list[float]) -> None:
    members = dict(zip(MEMBERS, probs, strict=False))
    c = confidence_of(score, members, threshold)
    assert 0.0 <= c <= 1.0


def test_confidence_meaning() -> None:
    assert confidence_of(0.9, {"a": 1.0, "b": 1.0, "c": 1.0}, 0.5) == 1.0
    assert confidence_of(0.1, {"a": 0.0, "b": 0.0, "c": 0.0}, 0.5) == 1.0
    lone = confidence_of(0.6, {"a": 0.95, "b": 0.1, "c": 0.2}, 0.5)
    assert lone < 0.5
    assert confidence_of(0.6, {}, 0.5) == 0.0


# ---------------------------------------------------------------------------
# Verdicts without a bundle
# ---------------------------------------------------------------------------
@given(scores=st.lists(unit, max_size=30), threshold=unit)
def test_stat_only_verdicts_pass_the_score_through(scores: list[float], threshold: float) -> None:
    out = verdicts(scores, [], None, threshold)
    assert len(out) == len(scores)
    for s, v in zip(scores, out, strict=True):
        assert v.score == s
        assert v.members == {"statistical": s}
        assert v.severity == severity_of(s, threshold)
        assert 0.0 <= v.confidence <= 1.0
        assert v.votes() == {"statistical": s >= 0.5}


def test_empty_batch() -> None:
    assert verdicts([], [], None, 0.5) == []
    assert verdicts([], [], tiny_bundle(), 0.5) == []
    assert tiny_bundle().member_raw(np.zeros((0, len(MODEL_INPUT_NAMES))), np.zeros(0)).shape == (0, len(MEMBERS))


# ---------------------------------------------------------------------------
# A small fitted bundle
# ---------------------------------------------------------------------------
def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows from the training data plus synthetic extremes (large z, edge stat scores)."""
    data, _ = training_data()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data.x), size=n, replace=False)
    x, s = data.x[pick].copy(), data.stat[pick].copy()
    x[: n // 4] = rng.uniform(-50.0, 50.0, size=(n // 4, x.shape[1]))
    s[: n // 8] = rng.choice([0.0, 1.0, 1e-300, 0.5], size=n // 8)
    return x, s


def test_bundle_scores_in_unit_interval() -> None:
    bundle = tiny_bundle()
    x, s = _rows(400, 1)
    ens, probs = bundle.score_batch(x, s)
    assert ens.shape == (400,) and probs.shape == (400, len(MEMBERS))
    assert np.all((ens >= 0) & (ens <= 1)) and np.all((probs >= 0) & (probs <= 1))
    for v in verdicts(s.tolist(), x.tolist(), bundle, 0.5):
        assert 0.0 <= v.score <= 1.0 and 0.0 <= v.confidence <= 1.0
        assert set(v.members) == set(MEMBERS) and all(0.0 <= p <= 1.0 for p in v.members.values())
        assert v.severity == severity_of(v.score, 0.5) or abs(v.score - 0.5) < 1e-6


def test_batch_scoring_equals_row_by_row() -> None:
    bundle = tiny_bundle()
    x, s = _rows(200, 2)
    ens, probs = bundle.score_batch(x, s)
    for i in range(len(x)):
        e1, p1 = bundle.score_batch(x[i : i + 1], s[i : i + 1])
        assert abs(e1[0] - ens[i]) <= 1e-12
        assert np.max(np.abs(p1[0] - probs[i])) <= 1e-12
    batch = verdicts(s.tolist(), x.tolist(), bundle, 0.5)
    one_by_one = [verdicts([s[i]], [x[i].tolist()], bundle, 0.5)[0] for i in range(len(x))]
    for a, b in zip(batch, one_by_one, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)  # verdict scores are rounded to 6 decimals
        assert a.members == pytest.approx(b.members, abs=1e-6)


def test_training_metrics_recorded() -> None:
    info = tiny_bundle().info
    m = info["metrics"]
    for member in (*MEMBERS, "ensemble"):
        for kind in ("auc", "ap"):
            v = m[f"{kind}_{member}"]
            assert isinstance(v, float) and 0.0 <= v <= 1.0, (kind, member, v)
    assert m["rows_fit"] > 0 and m["rows_calibration"] > 0
    assert m["positives_fit"] >= 5 and m["positives_calibration"] >= 5
    assert info["n_estimators"] == 20
    # The alert threshold chosen on the calibration period, with its event-level figures.
    bundle = tiny_bundle()
    assert 0.0 < bundle.threshold < 1.0
    events = info["events_calibration"]
    chosen = events["chosen"]
    assert chosen["combination"] == bundle.combination and chosen["threshold"] == bundle.threshold
    for rule in COMBINATIONS:
        assert 0.0 <= events[rule]["recall"] <= 1.0 and 0.0 <= events[rule]["precision"] <= 1.0
    # The stacker, unless the best cross-validated rule beats it with a paired interval above 0.
    def cv_key(rule: str) -> tuple[float, float]:
        cv = events[rule]["cross_validated"]
        return cv["f1"], -cv["false_alarms_per_symbol_day"]

    best = chosen["best_cross_validated"]
    assert cv_key(best) == max(cv_key(r) for r in COMBINATIONS)
    versus = chosen["best_minus_default"]
    if best == "stacked":
        assert chosen["combination"] == "stacked" and versus is None
    else:
        assert chosen["combination"] == (best if versus["ci95"][0] > 0 else "stacked")
        assert versus["difference"] == pytest.approx(
            cv_key(best)[0] - events["stacked"]["cross_validated"]["f1"], abs=2e-4)
    for rule in COMBINATIONS:  # judged on every event, each fold's threshold from the other fold
        assert events[rule]["cross_validated"]["events"] == events[rule]["events"]
    # Not a quality benchmark, only a sanity floor: the labelled events are plainly visible.
    assert m["auc_ensemble"] > 0.7


def test_the_threshold_is_the_middle_of_the_best_f1_plateau_within_the_budget() -> None:
    # (threshold, F1, false alarms per symbol-day), highest first. The best F1 within 0.1 is 0.9, on
    # the five thresholds 0.95 down to 0.75 (0.70's 0.95 breaks the budget): the middle one is 0.85.
    points = [(0.99, 0.5, 0.0), (0.95, 0.9, 0.0), (0.9, 0.9, 0.0), (0.85, 0.9, 0.05), (0.8, 0.9, 0.05),
              (0.75, 0.9, 0.1), (0.7, 0.95, 0.2), (0.6, 0.8, 0.4)]
    assert points[pick_threshold(points, 0.1)][0] == 0.85
    # A plateau interrupted by a lower F1 still counts its points; of an even count, the higher middle.
    gapped = [(0.99, 0.9, 0.0), (0.95, 0.8, 0.0), (0.9, 0.9, 0.0), (0.85, 0.9, 0.0), (0.8, 0.9, 0.0)]
    assert points[pick_threshold(points, 0.3)][0] == 0.7
    assert gapped[pick_threshold(gapped, 0.1)][0] == 0.9
    # Nothing within the budget: the fewest false alarms, then the higher threshold.
    over = [(0.9, 0.5, 0.3), (0.8, 0.6, 0.2), (0.7, 0.7, 0.2), (0.6, 0.8, 0.5)]
    assert over[pick_threshold(over, 0.1)][0] == 0.8
    with pytest.raises(ValueError):
        pick_threshold([], 0.1)


def test_the_sweep_stops_after_patience_points_over_the_budget() -> None:
    # F1 0.5 within the budget at 0.9 and 0.8; over it from 0.7 down, where F1 would be 1.0.
    asked: list[float] = []

    def figures(thr: float) -> tuple[float, float, str]:
        asked.append(thr)
        return (0.5, 0.0, f"r{thr}") if thr >= 0.8 else (1.0, 0.5, f"r{thr}")

    thr, report = sweep_and_pick([0.5, 0.9, 0.7, 0.8, 0.6, 0.4], figures, budget=0.1, patience=2)
    assert asked == [0.9, 0.8, 0.7, 0.6]  # highest first; two over the budget in a row end it
    assert (thr, report) == (0.9, "r0.9")  # the plateau 0.9, 0.8: the higher of its two middles


def test_a_rule_whose_threshold_breaks_the_budget_with_the_quiet_rows_ranks_below() -> None:
    from models.evaluation import EventReport

    def report(f1: float, fa: float) -> EventReport:
        return EventReport(10, 9, 0.9, 9, 9, 1.0, f1, int(fa * 4), 4.0, fa, 1.0, 2.0, ())

    cv = report(0.9, 0.0)
    # The same cross-validated figures; "a" has the better in-sample F1 with no false alarm on the
    # training rows, but 0.2 a symbol-day once the quiet rows' are added: over a budget of 0.1.
    a, b = report(1.0, 0.0), report(0.95, 0.0)
    assert rule_key(cv, a, 0.1) > rule_key(cv, b, 0.1)
    assert rule_key(cv, a, 0.1, in_sample_false_alarms=0.2) < rule_key(cv, b, 0.1, in_sample_false_alarms=0.05)


def test_cross_validation_judges_each_fold_at_the_threshold_the_other_fold_chose() -> None:
    # Two symbols, one a fold, a day of one row a minute, one event each at noon. A's event
    # scores 0.9 over a floor of 0.1, with a 0.5 blip at 03:00; B's event scores only 0.6, and
    # B has a 0.7 blip at 03:00.
    minute, day = 60_000, 1440
    t = np.tile(np.arange(day, dtype=np.int64) * minute, 2)
    symbol = np.array(["A"] * day + ["B"] * day, dtype=object)
    windows = (Window("pump_and_dump", "A", 720 * minute, 725 * minute),
               Window("pump_and_dump", "B", 720 * minute, 725 * minute))
    event = np.full(2 * day, -1, dtype=np.int64)
    event[720:726], event[day + 720:day + 726] = 0, 1
    scores = np.full(2 * day, 0.1)
    scores[720:726], scores[180], scores[day + 720:day + 726], scores[day + 180] = 0.9, 0.5, 0.6, 0.7
    data = Dataset(np.zeros((2 * day, 1)), scores, (event >= 0).astype(np.int8), t, symbol,
                   np.ones(2 * day, dtype=bool), windows, {"A": (0, (day - 1) * minute), "B": (0, (day - 1) * minute)},
                   event)
    fold = np.repeat([0, 1], day)
    everything = np.ones(2 * day, dtype=bool)
    # In sample, thresholds in (0.5, 0.6] find both events for B's blip's false alarm (F1 0.8, the best).
    thr, in_sample = choose_threshold(data, everything, scores, cooldown_s=300.0)
    assert (in_sample.detected, in_sample.false_alarms) == (2, 1) and 0.5 < thr <= 0.6
    # Cross-validated: A's rows alone reach their best F1 on (0.5, 0.9] and choose its middle in
    # log-odds (~0.75), which misses B's 0.6 and passes under B's blip; B's rows choose the middle of
    # (0.1, 0.6] (~0.29), which finds A's event and lets A's blip through.
    assert 0.7 < choose_threshold(data, fold == 0, scores[fold == 0], cooldown_s=300.0)[0] < 0.8
    assert 0.2 < choose_threshold(data, fold == 1, scores[fold == 1], cooldown_s=300.0)[0] < 0.4
    cv = cross_validated_report(data, scores, fold, cooldown_s=300.0)
    assert (cv.events, cv.detected, cv.false_alarms) == (2, 1, 1)
    assert cv.f1 == pytest.approx(0.5, abs=1e-4)  # reports round to 4 decimals


def test_quiet_rows_false_alarms_count_in_the_threshold_choice() -> None:
    # One symbol-day with one event (0.9) and nothing else above 0.1: alone, the budget of 0.1 a
    # symbol-day allows any threshold in (0.1, 0.9], which finds the event: the middle in log-odds is ~0.5.
    minute, day = 60_000, 1440
    t = np.arange(day, dtype=np.int64) * minute
    event = np.full(day, -1, dtype=np.int64)
    event[720:726] = 0
    scores = np.full(day, 0.1)
    scores[720:726] = 0.9
    data = Dataset(np.zeros((day, 1)), scores, (event >= 0).astype(np.int8), t, np.array(["A"] * day, dtype=object),
                   np.ones(day, dtype=bool), (Window("pump_and_dump", "A", 720 * minute, 725 * minute),),
                   {"A": (0, (day - 1) * minute)}, event)
    everything = np.ones(day, dtype=bool)
    thr, rep = choose_threshold(data, everything, scores, cooldown_s=300.0, max_false_alarms_per_symbol_day=0.1)
    assert (rep.detected, rep.false_alarms) == (1, 0) and 0.4 < thr < 0.6
    # Nine quiet symbol-days (one row a minute), blips of 0.8 on five of them and of 0.95 on two others:
    # two false alarms in ten symbol-days keep to a budget of 0.25 at thresholds above 0.8, which still
    # find the event. Blips of 0.95 on three (0.3 a symbol-day at 0.9) leave no threshold that finds it.
    for blips, detected in ((2, 1), (3, 0)):
        n = 9
        qt = np.tile(t, n)
        qsym = np.repeat([f"Q{i}" for i in range(n)], day).astype(object)
        qscores = np.full(n * day, 0.1)
        for i in range(blips):
            qscores[i * day + 100] = 0.95
        for i in range(blips, blips + 5):
            qscores[i * day + 100] = 0.8
        quiet = Dataset(np.zeros((n * day, 1)), qscores, np.zeros(n * day, dtype=np.int8), qt, qsym,
                        np.ones(n * day, dtype=bool), (), {f"Q{i}": (0, (day - 1) * minute) for i in range(n)})
        alarms = QuietAlarms(quiet, qscores, cooldown_s=300.0)
        assert alarms.symbol_days == pytest.approx(9.0, abs=0.01)
        assert alarms(0.9) == blips and alarms(0.5) == blips + 5
        # Rows under the floor are dropped, which changes nothing at thresholds above it.
        assert QuietAlarms(quiet, qscores, cooldown_s=300.0, floor=0.5)(0.8) == alarms(0.8) == blips + 5
        thr, rep = choose_threshold(data, everything, scores, cooldown_s=300.0, max_false_alarms_per_symbol_day=0.25,
                                    quiet=alarms)
        assert rep.detected == detected, blips
        if detected:  # the event's F1 within the budget only on (0.8, 0.9]
            assert 0.8 < thr <= 0.9
        assert alarms(thr) <= 2  # within the budget, or the fewest false alarms when none is
        # With a margin, the two false alarms are an upper bound of 2.67 at 50 % confidence (0.267 a
        # symbol-day): over the budget, so only the thresholds without any false alarm remain.
        if detected:
            margin = QuietAlarms(quiet, qscores, cooldown_s=300.0, confidence=0.5)
            thr_m, rep_m = choose_threshold(data, everything, scores, cooldown_s=300.0,
                                            max_false_alarms_per_symbol_day=0.25, quiet=margin)
            assert rep_m.detected == 0 and thr_m > 0.95 and margin(thr_m) == 0
            assert margin.rate_with(rep_m, thr_m) == pytest.approx(math.log(2) / 10, rel=1e-3)


def test_a_rule_replaces_the_stacker_only_when_clearly_better() -> None:
    # Per symbol: events, detected, episodes, true episodes. "vote" finds one more event than the
    # stacker on one symbol of twenty (noise); "mean" finds one more on each of them (evidence).
    stacked = np.array([[2, 1, 1, 1]] * 20)
    one_better = stacked.copy()
    one_better[0] = [2, 2, 2, 2]
    all_better = np.array([[2, 2, 2, 2]] * 20)
    counts = {"stacked": stacked, "vote": one_better, "mean": all_better}
    assert choose_rule("stacked", counts) == ("stacked", None)
    rule, diff = choose_rule("vote", counts)
    assert rule == "stacked" and diff is not None and diff["ci95"][0] <= 0 < diff["difference"]
    rule, diff = choose_rule("mean", counts)
    assert rule == "mean" and diff is not None and diff["ci95"][0] > 0


def test_bundle_calibration_is_plain_numbers() -> None:
    bundle = tiny_bundle()
    assert set(bundle.calibration) == set(MEMBERS)
    for p in bundle.calibration.values():
        assert isinstance(p, Platt) and math.isfinite(p.a) and math.isfinite(p.b)
    # one weight per member, then the members' median (models.ensemble.stack_inputs)
    assert len(bundle.stack_weights) == len(MEMBERS) + 1 and math.isfinite(bundle.stack_bias)


def test_false_alarm_budget_is_capped_at_the_target() -> None:
    data, _ = training_data()
    free = fit_bundle(data, TrainConfig(n_estimators=5, false_alarm_target=None))
    derived = free.info["metrics"]["false_alarm_budget_per_symbol_day"]
    assert derived > 0  # half the statistical layer's own rate on these rows
    loose = fit_bundle(data, TrainConfig(n_estimators=5, false_alarm_target=10 * derived))
    assert loose.info["metrics"]["false_alarm_budget_per_symbol_day"] == derived
    tight = fit_bundle(data, TrainConfig(n_estimators=5, false_alarm_target=derived / 2))
    assert tight.info["metrics"]["false_alarm_budget_per_symbol_day"] == pytest.approx(derived / 2, abs=1e-4)
    chosen = tight.info["events_calibration"]["chosen"]
    assert chosen["false_alarms_per_symbol_day"] <= derived / 2 + 1e-9
    # A tighter budget never buys a rule more false alarms (a rule that cannot get under it, like
    # `max` with its saturated statistical member, keeps its fewest).
    for rule in COMBINATIONS:
        fa = tight.info["events_calibration"][rule]["false_alarms_per_symbol_day"]
        assert fa <= free.info["events_calibration"][rule]["false_alarms_per_symbol_day"], rule
    with pytest.raises(ValueError, match="false_alarm_target"):
        TrainConfig(false_alarm_target=-0.1)


def test_fit_bundle_refuses_too_few_positives() -> None:
    data, _ = training_data()
    no_pos = dataclasses.replace(data, y=np.zeros_like(data.y))
    with pytest.raises(ValueError, match="positive"):
        fit_bundle(no_pos, TrainConfig(n_estimators=5))


def _every(data: Dataset, step: int) -> Dataset:
    """Every step-th row (all per-row arrays sliced alike), same time span."""
    n = len(data.y)
    return dataclasses.replace(data, **{
        f.name: v[::step]
        for f in dataclasses.fields(data)
        if isinstance(v := getattr(data, f.name), np.ndarray) and len(v) == n
    })  # fmt: skip


def test_fitting_is_deterministic() -> None:
    data, _ = training_data()
    every3 = _every(data, 3)
    x, s = _rows(100, 3)
    a = fit_bundle(every3, TrainConfig(n_estimators=5, seed=1)).score_batch(x, s)
    b = fit_bundle(every3, TrainConfig(n_estimators=5, seed=1)).score_batch(x, s)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


log_odds = st.floats(-LOGIT_BOUND, LOGIT_BOUND, allow_nan=False)


@given(st.lists(st.tuples(log_odds, log_odds, log_odds), min_size=1, max_size=20), unit)
def test_vote_combination_alerts_exactly_when_two_members_agree(rows: list[tuple[float, float, float]],
                                                               threshold: float) -> None:
    bundle = ModelBundle("v", None, None, {m: Platt() for m in MEMBERS}, (1.0, 1.0, 1.0), 0.0,  # type: ignore[arg-type]
                         combination="vote")
    scores = bundle.combine(np.asarray(rows, dtype=np.float64))
    for row, score in zip(rows, scores.tolist(), strict=True):
        probs = sigmoid(np.asarray(row))
        assert (score >= threshold) == (sum(p >= threshold for p in probs) >= 2)


@given(st.lists(st.tuples(log_odds, log_odds, log_odds), min_size=1, max_size=20),
       st.tuples(*[st.floats(-3, 3)] * 3), st.floats(-5, 5))
def test_legacy_stacker_reads_members_through_probabilities_clipped_at_1e6(
        rows: list[tuple[float, float, float]], weights: tuple[float, float, float], bias: float) -> None:
    """An artifact saved without a clip scores as it was trained: logit(clip(p, 1e-6, 1 - 1e-6))."""
    lo = np.asarray(rows, dtype=np.float64)
    legacy = ModelBundle("v", None, None, {m: Platt() for m in MEMBERS}, weights, bias,  # type: ignore[arg-type]
                         stack_clip=LEGACY_STACK_CLIP)
    as_trained = sigmoid(logit(sigmoid(lo)) @ np.asarray(weights) + bias)
    assert np.allclose(legacy.combine(lo), as_trained, rtol=0.0, atol=1e-9)


def test_stacker_tells_strong_rule_firings_apart() -> None:
    """Rule excesses of 3 and 20 (scores 0.953 and 1 - 2e-9) reach the stacker as different inputs;
    through probabilities clipped at 1e-6 (the older artifacts) they did not."""
    scores = np.asarray([sigmoid(np.asarray(3.0)), sigmoid(np.asarray(20.0))], dtype=np.float64)
    calibration = {"statistical": Platt(3.0, 7.0), "iforest": Platt(), "rforest": Platt()}
    raw = np.column_stack([stat_logit(scores), np.zeros(2), np.zeros(2)])
    new = ModelBundle("v", None, None, calibration, (1.0, 0.0, 0.0), 0.0)  # type: ignore[arg-type]
    old = dataclasses.replace(new, stack_clip=LEGACY_STACK_CLIP)
    assert np.allclose(stat_logit(scores), [3.0, 20.0], atol=1e-6)
    assert np.allclose(new.member_log_odds(raw)[:, 0], [16.0, 50.0])  # 3 * 20 + 7 = 67, bounded at 50
    lo = new.member_log_odds(raw)
    assert new.combine(lo)[0] < new.combine(lo)[1]
    assert old.combine(lo)[0] == old.combine(lo)[1]


@given(st.lists(st.tuples(log_odds, log_odds, log_odds), min_size=1, max_size=20))
def test_median_of_three_is_numpys_median(rows: list[tuple[float, float, float]]) -> None:
    lo = np.asarray(rows, dtype=np.float64)
    assert np.array_equal(median_of_three(lo), np.median(lo, axis=1))


@given(st.lists(st.tuples(log_odds, log_odds, log_odds), min_size=1, max_size=20),
       st.tuples(*[st.floats(-3, 3)] * 4), st.floats(-5, 5))
def test_stacker_with_a_median_weight_adds_the_members_median(
        rows: list[tuple[float, float, float]], weights: tuple[float, float, float, float], bias: float) -> None:
    """Four weights: the members' log-odds, then their median, each clipped at the bound first."""
    lo = np.asarray(rows, dtype=np.float64)
    bundle = ModelBundle("v", None, None, {m: Platt() for m in MEMBERS}, weights, bias)  # type: ignore[arg-type]
    clipped = np.clip(lo, -LOGIT_BOUND, LOGIT_BOUND)
    reference = [sigmoid(np.asarray(sum(w * x for w, x in zip(weights[:3], row, strict=True))
                                    + weights[3] * sorted(row)[1] + bias)) for row in clipped.tolist()]
    assert np.allclose(bundle.combine(lo), reference, rtol=0.0, atol=1e-9)


def test_a_lone_member_needs_the_others_when_the_stacker_weighs_their_median() -> None:
    """With weight on the median, one member far past its threshold scores below two that agree."""
    bundle = ModelBundle("v", None, None, {m: Platt() for m in MEMBERS},  # type: ignore[arg-type]
                         (0.2, 0.1, 0.3, 1.0), -2.0)
    lone, agreed = bundle.combine(np.asarray([[30.0, -5.0, -5.0], [5.0, -5.0, 5.0]]))
    assert lone < 0.5 < agreed
    without = dataclasses.replace(bundle, stack_weights=(0.2, 0.1, 0.3))  # the same members, no median
    lone, agreed = without.combine(np.asarray([[30.0, -5.0, -5.0], [5.0, -5.0, 5.0]]))
    assert lone > agreed


INTERPRETED = os.environ.get(_native.CORE_ENV) == "interpreted"
needs_rowpack = pytest.mark.skipif(INTERPRETED,
                                   reason="the C row packing is not on the path of an interpreted-core run")
#: Values a model input row can hold: any float (nan and infinities included) and ints (float() of them).
row_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**53), 2**53))


def test_the_suite_packs_rows_in_c_unless_told_otherwise() -> None:
    # `make test` builds the row packing with the mypyc core: model_scores in every other test then uses it.
    assert (ensemble._rowpack is None) == INTERPRETED


@needs_rowpack
@given(width=st.integers(1, 20), data=st.data())
def test_c_row_packing_gives_numpys_array(width: int, data: st.DataObject) -> None:
    rows = data.draw(st.lists(st.lists(row_value, min_size=width, max_size=width), max_size=50))
    packed = ensemble._rowpack.pack_rows(rows, width)
    expected = np.asarray(rows, dtype=np.float64).reshape(len(rows), width)
    assert packed.dtype == np.float64 and packed.flags.c_contiguous and packed.shape == (len(rows), width)
    assert np.array_equal(packed.view(np.int64), expected.view(np.int64))  # the same bits, nan included


@needs_rowpack
def test_c_row_packing_refuses_ragged_or_foreign_rows() -> None:
    with pytest.raises(ValueError, match="row 1 has 2 values, expected 3"):
        ensemble._rowpack.pack_rows([[1.0, 2.0, 3.0], [1.0, 2.0]], 3)
    with pytest.raises(TypeError):
        ensemble._rowpack.pack_rows([(1.0, 2.0, 3.0)], 3)
    with pytest.raises(TypeError):
        ensemble._rowpack.pack_rows([["x", 2.0, 3.0]], 3)


@needs_rowpack
def test_rows_array_packs_lists_in_c_and_leaves_everything_else_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = ensemble._rowpack

    class CountingPack:
        @staticmethod
        def pack_rows(rows: list[list[float]], width: int) -> np.ndarray:
            calls.append(width)
            return real.pack_rows(rows, width)

    monkeypatch.setattr(ensemble, "_rowpack", CountingPack)
    rows = [[0.5, math.nan, -1.0], [2.0, math.inf, -0.0]]
    expected = np.asarray(rows, dtype=np.float64)
    assert np.array_equal(ensemble.rows_array(rows).view(np.int64), expected.view(np.int64)) and calls == [3]
    # numpy's forms: an array, tuple rows, None as NaN; and an empty batch.
    assert np.array_equal(ensemble.rows_array(expected), expected, equal_nan=True)  # type: ignore[arg-type]
    assert np.array_equal(ensemble.rows_array([tuple(r) for r in rows]), expected, equal_nan=True)  # type: ignore[misc]
    assert np.isnan(ensemble.rows_array([[None, 1.0]])[0, 0])  # type: ignore[list-item]
    assert ensemble.rows_array([["1.5", 2.0]])[0, 0] == 1.5  # type: ignore[list-item]
    with pytest.raises(ValueError):  # numpy's error, not the kernel's TypeError
        ensemble.rows_array([["x", 2.0]])  # type: ignore[list-item]
    assert ensemble.rows_array([]).size == 0
    assert calls == [3, 2, 2, 2]  # the three lists of lists went to the kernel first
