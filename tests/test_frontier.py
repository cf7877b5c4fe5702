"""Event F1 at equal false-alarm rates (app.frontier, app.ablation.sweep) on hand-made score series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import frontier
from app.ablation import SeedRun, counts_at, evaluate_method, markdown, paired_at_levels, sweep
from models.evaluation import Event

MINUTE = 60_000


def _run(seed: int, event_score: float, blip: float | None) -> SeedRun:
    """One symbol, one day at one score per minute: an event at minute 600, maybe a false alarm at 300."""
    times = np.arange(0, 1440 * MINUTE, MINUTE, dtype=np.int64)
    s = np.zeros(times.size)
    s[605] = event_score
    if blip is not None:
        s[300] = blip
    event = Event("A", 600 * MINUTE, 620 * MINUTE, "pump_and_dump")
    return SeedRun(seed, {"m": s}, np.array(["A"] * times.size, dtype=object), times, np.ones(times.size),
                   [event], [event], {"A": (0, int(times[-1]))})


def test_frontier_gives_the_best_f1_at_each_false_alarm_level() -> None:
    # Seed 1: event 0.9, a false alarm at 0.95; seed 2: event 0.8. Two symbol-days pooled.
    # Lowering the threshold: nothing; the false alarm (F1 0, 0.5 per symbol-day); seed 1's event
    # (P 1/2, R 1/2: F1 0.5); seed 2's event (P 2/3, R 1: F1 0.8), the false alarms staying at 0.5.
    runs = [_run(1, 0.9, 0.95), _run(2, 0.8, None)]
    candidates = np.array([0.5, 0.85, 0.925, 0.99])
    points = sweep(runs, "m", 300.0, candidates)
    assert [p.threshold for p in points] == [0.99, 0.925, 0.85, 0.5]
    assert [round(p.f1, 4) for p in points] == [0.0, 0.0, 0.5, 0.8]
    fa = 1 / (2 * 1439 / 1440)
    assert [p.false_alarms_per_symbol_day for p in points] == pytest.approx([0.0, fa, fa, fa], abs=1e-3)
    at_zero, at_one = frontier.best_at(points, 0.0), frontier.best_at(points, 1.0)
    assert at_zero is not None and at_zero.threshold == 0.99 and at_zero.f1 == 0.0
    assert at_one is not None and at_one.threshold == 0.5 and at_one.f1 == pytest.approx(0.8)
    table = frontier.matched({"m": points}, levels=(0.0, 0.2, 1.0))
    assert table["m"]["0"]["f1"] == 0.0 and table["m"]["0.2"]["f1"] == 0.0
    assert table["m"]["1"] == {"f1": 0.8, "recall": 1.0, "threshold": 0.5, "false_alarms_per_symbol_day": 0.5003}


def test_a_level_no_threshold_reaches_is_reported_as_out_of_reach() -> None:
    # The false alarm scores above the event, so every threshold that finds the event also alarms.
    points = sweep([_run(1, 0.9, 1.0)], "m", 300.0, np.array([0.5]))
    assert frontier.best_at(points, 0.5) is None
    table = frontier.matched({"m": points}, levels=(0.5, 2.0))
    assert table["m"]["0.5"] is None and table["m"]["2"]["f1"] == pytest.approx(2 / 3, abs=1e-4)
    text = frontier.markdown(table)
    assert "| m | - | 0.667 |" in text


def test_the_sweep_stops_once_false_alarms_stay_above_the_plotted_range() -> None:
    # A false alarm every 10 minutes at 0.5: all thresholds <= 0.5 alarm ~100 times a day.
    run = _run(1, 0.9, None)
    run.scores["m"][::10] = np.maximum(run.scores["m"][::10], 0.5)
    candidates = np.concatenate([[0.95, 0.9], np.linspace(0.5, 0.01, 40)])
    points = sweep([run], "m", 300.0, candidates)
    assert len(points) == 2 + 12  # the two above 0.5, then twelve past the range
    assert all(p.false_alarms_per_symbol_day > frontier.MAX_FALSE_ALARMS for p in points[2:])


def test_ablation_markdown_and_plot_carry_the_equal_false_alarm_view(tmp_path: Path) -> None:
    runs = [_run(1, 0.9, 0.95), _run(2, 0.8, None)]
    frontiers = {"m": sweep(runs, "m", 300.0, np.array([0.5, 0.85, 0.925, 0.99])),
                 "other": sweep(runs, "m", 300.0, np.array([0.99]))}
    syn = {"calibration_seed": [3], "eval_seeds": [1, 2], "fa_cap": 0.2, "symbol_days": 2.0, "events": 2,
           "methods": {"m": {"threshold": 0.85, "pooled": {"f1": 0.5, "false_alarms_per_symbol_day": 0.5}}},
           "equal_false_alarms": frontier.matched(frontiers, levels=(0.0, 1.0)),
           "shipped": {"ensemble@0.5": {"threshold": 0.5, "pooled": {
               "f1": 0.8, "recall": 1.0, "false_alarms_per_symbol_day": 0.5,
               "ci95": {"f1": [0.6, 1.0], "false_alarms_per_symbol_day": [0.0, 1.0]}}}}}
    text = markdown({"synthetic": syn})
    assert "* ensemble@0.5 at 0.5000: F1 0.800 [0.60, 1.00], 0.50 [0.00, 1.00] false alarms / symbol-day" in text
    assert "Event F1 at equal false-alarm rates" in text
    assert "| m | 0.000 | 0.800 |" in text and "| other | 0.000 | 0.000 |" in text
    frontier.frontier_plot(tmp_path / "frontier.png", frontiers, lead="m")
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frontier.write_csv(tmp_path / "frontiers.csv.gz", frontiers)
    assert frontier.read_csv(tmp_path / "frontiers.csv.gz") == {
        m: [frontier.Point(p.threshold, round(p.false_alarms_per_symbol_day, 6), round(p.f1, 6), round(p.recall, 6))
            for p in pts] for m, pts in frontiers.items()}


def test_paired_differences_at_each_level_use_each_methods_own_best_threshold() -> None:
    # "m" as above; "n" finds only seed 2's event and never alarms falsely.
    runs = [_run(1, 0.9, 0.95), _run(2, 0.8, None)]
    runs[0].scores["n"] = np.zeros_like(runs[0].scores["m"])
    runs[1].scores["n"] = runs[1].scores["m"].copy()
    candidates = np.array([0.5, 0.85, 0.925, 0.99])
    frontiers = {m: sweep(runs, m, 300.0, candidates) for m in ("m", "n")}
    assert counts_at(runs, "m", 0.5, 300.0).tolist() == [[1, 1, 2, 1], [1, 1, 1, 1]]
    paired = paired_at_levels(runs, frontiers, "m", 300.0, levels=(0.0, 1.0))
    # No false alarm allowed: m must stay above its 0.95 false alarm (F1 0); n finds one event of two (2/3).
    assert paired["0"]["n"]["difference"] == pytest.approx(-2 / 3, abs=1e-4)
    # Up to one a day: m at 0.5 (F1 0.8) against n at its best, still 2/3.
    assert paired["1"]["n"]["difference"] == pytest.approx(0.8 - 2 / 3, abs=1e-4)
    assert set(paired["1"]) == {"n"}  # the lead is not compared with itself
    text = frontier.markdown(frontier.matched(frontiers, levels=(0.0, 1.0)), {"lead": "m", "levels": paired})
    assert "| n | 0.667 (-0.667 [" in text and "in brackets m's F1 minus the method's" in text


def test_a_missed_event_is_listed_with_its_length_activity_and_peak_score() -> None:
    runs = [_run(1, 0.9, None), _run(2, 0.6, None)]
    result = evaluate_method(runs, "m", 0.8, 300.0, resamples=10)
    assert result["pooled"]["recall"] == 0.5
    # One trade a minute throughout: 21 trades in the 20-minute window (both ends in it), 60 in the hour before.
    assert result["missed"] == [{"seed": 2, "symbol": "A", "scenario": "pump_and_dump", "start_ms": 600 * MINUTE,
                                 "duration_s": 1200.0, "trade_rate_multiple": 1.05, "peak_score": 0.6}]
    syn = {"calibration_seed": [3], "eval_seeds": [1, 2], "fa_cap": 0.2, "symbol_days": 2.0, "events": 2,
           "methods": {}, "shipped": {"ensemble": result}}
    assert "recall 0.500; missed: pump_and_dump x1.1 trades over 1200 s\n" in markdown({"synthetic": syn})


def test_a_runs_series_are_each_symbols_rows_in_time_order() -> None:
    rng = np.random.default_rng(0)
    symbols = rng.choice(np.array(["A", "B", "C"], dtype=object), size=500)
    times = np.arange(500, dtype=np.int64) * 1000
    scores = rng.random(500)
    run = SeedRun(1, {"m": scores}, symbols, times, times * 0.5, [], [],
                  {s: (0, 499_000) for s in ("A", "B", "C", "D")})  # D has a span but no row
    series = run.series("m")
    for sym in ("A", "B", "C"):
        mask = symbols == sym
        for got, want in zip(series[sym], (times[mask], times[mask] * 0.5, scores[mask]), strict=True):
            np.testing.assert_array_equal(got, want)
    assert all(len(a) == 0 for a in series["D"])
