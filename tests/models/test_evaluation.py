"""Event-level metrics on hand-worked cases: every figure the README reports goes through these."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.evaluation import Event, episodes, evaluate, false_alarm_contexts, paired_f1_difference, symbol_counts

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def test_alerts_closer_than_the_gap_are_one_episode_timed_at_its_first_alert() -> None:
    alerts = [("A", 50 * MIN), ("A", 0), ("A", 29 * MIN), ("B", 5 * MIN), ("A", 80 * MIN)]
    assert episodes(alerts, episode_gap_s=1800.0) == {"A": [0, 80 * MIN], "B": [5 * MIN]}


@given(st.lists(st.integers(0, 10 * DAY), max_size=40), st.integers(1, 7200))
def test_episode_starts_are_sorted_alerts_at_least_a_gap_after_the_previous_alert(times: list[int], gap_s: int) -> None:
    starts = episodes([("A", t) for t in times], gap_s).get("A", [])
    ordered = sorted(times)
    expected = [t for k, t in enumerate(ordered) if k == 0 or t - ordered[k - 1] >= gap_s * 1000]
    assert starts == expected


def test_a_hand_worked_report() -> None:
    events = [Event("A", 1 * HOUR, 2 * HOUR, "pump_and_dump"), Event("A", 10 * HOUR, 11 * HOUR, "flash_crash"),
              Event("B", 5 * HOUR, 6 * HOUR, "stale_price")]
    alerts = [
        ("A", 1 * HOUR + 30_000),  # detects the pump after 30 s
        ("A", 1 * HOUR + 60_000),  # same episode
        ("A", 10 * HOUR - MIN),  # starts before the crash window: a false alarm, and the crash is missed
        ("A", 10 * HOUR + 5 * MIN),  # 6 min later: the same episode, so not credited (no point adjustment)
        ("B", 3 * HOUR),  # false alarm
        ("B", 5 * HOUR + 90_000),  # detects the stale price after 90 s
    ]
    spans = {"A": (0, DAY), "B": (0, DAY // 2)}
    rep = evaluate(alerts, events, spans, episode_gap_s=1800.0)
    assert (rep.events, rep.detected, rep.episodes, rep.true_episodes, rep.false_alarms) == (3, 2, 4, 2, 2)
    assert rep.recall == pytest.approx(2 / 3, abs=1e-4) and rep.precision == 0.5
    assert rep.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-4)
    assert rep.symbol_days == 1.5 and rep.false_alarms_per_symbol_day == pytest.approx(2 / 1.5, abs=1e-4)
    assert rep.delay_median_s == 60.0  # median of 30 s and 90 s
    assert [d for _, d in rep.per_event] == [30.0, None, 90.0]


def test_no_alerts_means_no_detection_and_no_false_alarm() -> None:
    rep = evaluate([], [Event("A", 0, HOUR)], {"A": (0, DAY)})
    assert (rep.detected, rep.f1, rep.false_alarms, rep.delay_median_s) == (0, 0.0, 0, None)


def test_false_alarms_are_told_apart_by_where_they_start() -> None:
    events = [Event("A", 1 * HOUR, 2 * HOUR, "pump_and_dump"), Event("A", 5 * HOUR, 8 * HOUR, "regime_shift"),
              Event("B", 1 * HOUR, 2 * HOUR, "flash_crash")]
    alerts = [
        ("A", 1 * HOUR + MIN),  # a true alarm: not counted
        ("A", 2 * HOUR + 40 * MIN),  # 40 min after the pump's window
        ("A", 6 * HOUR),  # inside the regime shift
        ("A", 20 * HOUR),  # nowhere near anything
        ("B", 3 * HOUR + 30 * MIN),  # 90 min after the crash: beyond after_s
        ("C", 0),  # a symbol without events
    ]
    contexts = false_alarm_contexts(alerts, events, frozenset({"regime_shift"}), after_s=3600.0)
    assert contexts == {"after_pump_and_dump": 1, "elsewhere": 3, "in_regime_shift": 1}
    assert sum(contexts.values()) == evaluate(alerts, [e for e in events if e.scenario != "regime_shift"],
                                              {"A": (0, DAY), "B": (0, DAY), "C": (0, DAY)}).false_alarms


alert_lists = st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, DAY)), max_size=30)


@given(alert_lists)
def test_symbol_counts_add_up_to_the_report(alerts: list[tuple[str, int]]) -> None:
    events = [Event("A", HOUR, 3 * HOUR), Event("A", 10 * HOUR, 11 * HOUR), Event("B", 5 * HOUR, 5 * HOUR + MIN)]
    spans = {s: (0, DAY) for s in "ABC"}
    rep = evaluate(alerts, events, spans)
    counts = symbol_counts(rep, alerts, ["A", "B", "C"])
    assert counts.sum(axis=0).tolist() == [rep.events, rep.detected, rep.episodes, rep.true_episodes]
    assert counts[2, 0] == 0 and counts[2, 3] == 0  # C has no event, so no true episode either
    # Identical methods: no difference in any replicate.
    same = paired_f1_difference(counts, counts, resamples=200)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["share_not_above"] == 1.0


def test_paired_difference_of_a_method_that_does_better_on_every_symbol() -> None:
    # Per symbol: events, detected, episodes, true episodes. A finds every event with no false alarm;
    # B misses one event on each of the first five symbols and raises one false alarm on the last.
    a = np.array([[2, 2, 2, 2]] * 10)
    b = np.array([[2, 1, 1, 1]] * 5 + [[2, 2, 2, 2]] * 4 + [[2, 2, 3, 2]])
    out = paired_f1_difference(a, b, resamples=500, seed=1)
    recall_b, precision_b = 15 / 20, 15 / 16
    assert out["difference"] == pytest.approx(1.0 - 2 * recall_b * precision_b / (recall_b + precision_b), abs=1e-4)
    lo, hi = out["ci95"]
    assert 0.0 <= lo < out["difference"] < hi  # never worse on any symbol, so no replicate favours B
    assert out["share_not_above"] < 0.01  # only a draw of symbols where both are perfect ties
    with pytest.raises(ValueError):
        paired_f1_difference(a, b[:5])
