"""``cryptotrace nab`` (app.nab_cmd) on a tiny NAB-shaped directory, and the ablation's pieces (app.ablation)."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from app import nab_cmd
from app.ablation import (
    SeedRun,
    calibrate,
    evaluate_method,
    evaluate_random,
    markdown,
    methods_of,
    paired_against,
    pool_runs,
    run_seed,
)
from app.nab_data import load_corpus, load_windows
from app.settings import Settings
from models import nab
from models.evaluation import Event
from models.pipeline import Pipeline


def _write_nab(root: Path) -> None:
    rng = np.random.default_rng(0)
    windows = {}
    for folder, name, n, jump in (("artA", "a.csv", 1500, 1100), ("realB", "b.csv", 1200, 800)):
        (root / "data" / folder).mkdir(parents=True)
        stamps = np.datetime64("2014-01-01T00:00:00") + np.arange(n) * np.timedelta64(5, "m")
        v = 50 + 0.3 * rng.normal(size=n).cumsum() + rng.normal(size=n)
        v[jump:] += 40.0  # a level shift inside the window
        with (root / "data" / folder / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows([str(t).replace("T", " "), f"{x:.4f}"] for t, x in zip(stamps, v, strict=True))
        lo, hi = stamps[jump - 40], stamps[jump + 40]
        windows[f"{folder}/{name}"] = [[str(lo).replace("T", " ") + ".000000", str(hi).replace("T", " ") + ".000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_nab_command_writes_scores_and_both_thresholds(tmp_path: Path) -> None:
    data, out = tmp_path / "nab", tmp_path / "out"
    _write_nab(data)
    settings = Settings(model_dir=tmp_path / "no-models")
    args = argparse.Namespace(data=data, out=out, model_version=None, threshold=None, stat_only=True, batch_size=None)
    assert nab_cmd.run(settings, args) == 0
    result = json.loads((out / "nab.json").read_text())
    fixed, opt = result["fixed"], result["optimised"]
    assert fixed["threshold"] == 0.5 and fixed["scores_csv_reproduces_fixed"] is True
    for key in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert -1000 < fixed[key] <= 100 and opt[key] >= fixed[key] - 1e-9  # the optimiser tries 0.5 too
    assert fixed["windows"] == 2
    with gzip.open(out / "scores.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "timestamp", "anomaly_score"]
    corpus = load_corpus(data)
    assert len(rows) - 1 == sum(len(s) for s in corpus.values())
    assert rows[1][0] == "artA/a.csv" and rows[1][1] == "2014-01-01 00:00:00"
    # the file, scored by NAB's plain rule at the fixed threshold, gives the fixed figure
    by_file: dict[str, list[float]] = {}
    for name, _, s in rows[1:]:
        by_file.setdefault(name, []).append(float(s))
    layouts = nab.layout_corpus({k: s.timestamps for k, s in corpus.items()}, load_windows(data))
    score = nab.score_corpus(layouts, {k: np.asarray(v) for k, v in by_file.items()}, nab.STANDARD, 0.5)
    assert round(score.normalised, 2) == fixed["standard"]
    # the level shifts are inside the windows: the statistical layer finds them
    assert fixed["detected_windows"] == 2


def test_nab_command_refuses_a_missing_directory(tmp_path: Path) -> None:
    args = argparse.Namespace(data=None, out=tmp_path, model_version=None, threshold=None, stat_only=True,
                              batch_size=None)
    import os
    old = os.environ.get("CRYPTOTRACE_NAB_DIR")
    os.environ["CRYPTOTRACE_NAB_DIR"] = str(tmp_path / "nothing")
    try:
        assert nab_cmd.run(Settings(), args) == 2
    finally:
        if old is None:
            del os.environ["CRYPTOTRACE_NAB_DIR"]
        else:
            os.environ["CRYPTOTRACE_NAB_DIR"] = old


def _run(seed: int, scores: np.ndarray) -> SeedRun:
    day = 86_400_000
    times = np.arange(0, day, 60_000, dtype=np.int64)
    return SeedRun(seed, {"m": scores, "rolling_z": scores}, np.array(["A"] * times.size, dtype=object), times,
                   np.ones(times.size), [Event("A", 600 * 60_000, 620 * 60_000, "pump_and_dump")],
                   [Event("A", 600 * 60_000, 620 * 60_000, "pump_and_dump")], {"A": (0, int(times[-1]))})


def test_calibrate_respects_the_cap_and_evaluation_uses_the_frozen_threshold() -> None:
    s = np.zeros(1440)
    s[605] = 0.9  # the event
    s[100] = 0.7  # a false alarm below it
    run = _run(1, s)
    thr, rep = calibrate(run, "m", 300.0, fa_cap=0.5)
    assert 0.7 < thr <= 0.9 and rep.f1 == 1.0 and rep.false_alarms == 0
    out = evaluate_method([run], "m", thr, 300.0, resamples=50)
    assert out["pooled"]["f1"] == 1.0 and out["per_seed"]["1"]["false_alarms"] == 0
    rnd = evaluate_random([run], [2.0])
    assert rnd["pooled"]["false_alarms_per_symbol_day"] > 0
    table = markdown({"synthetic": {"calibration_seed": 1, "eval_seeds": [1], "fa_cap": 0.5, "symbol_days": 1.0,
                                    "events": 1, "methods": {"m": out, "random": {"threshold": None, **rnd}}}})
    assert "| m |" in table and "| random |" in table
    # Paired against a method that finds the event one seed in two: "m" is better by F1 1 - 2/3.
    miss = _run(2, s)
    miss.scores["m"] = s.copy()
    miss.scores["rolling_z"] = np.zeros_like(s)
    runs = [run, _run(3, s.copy()), miss]
    results = {m: evaluate_method(runs, m, thr, 300.0, resamples=50) for m in ("m", "rolling_z")}
    diff = paired_against(results, "m", ["rolling_z"])["rolling_z"]
    assert diff["difference"] == pytest.approx(1.0 - 2 * (2 / 3) / (1 + 2 / 3), abs=1e-4)
    assert diff["ci95"][0] == 0.0 and diff["share_not_above"] > 0  # a draw without the missing seed ties


def test_calibration_on_pooled_seeds_keeps_their_symbols_apart() -> None:
    # Seed 1's event scores 0.9, with a 0.75 blip; seed 2's event scores 0.8, with a 0.85 blip on its
    # symbol 5 h earlier. Alone, seed 1 would freeze the middle of (0.75, 0.9], which misses seed 2's
    # event. Pooled, the best thresholds, (0.75, 0.8], find both events and let seed 2's blip through
    # (F1 0.8 beats 0.667).
    s1, s2 = np.zeros(1440), np.zeros(1440)
    s1[605], s1[200], s2[605], s2[300] = 0.9, 0.75, 0.8, 0.85
    pooled = pool_runs([_run(1, s1), _run(2, s2)])
    assert sorted(pooled.spans) == ["1:A", "2:A"] and len(pooled.events) == 2
    assert pooled.scores["m"].size == 2 * 1440
    thr, rep = calibrate(pooled, "m", 300.0, fa_cap=10.0)
    assert 0.75 < thr <= 0.8 and (rep.detected, rep.false_alarms) == (2, 1)
    thr1, rep1 = calibrate(_run(1, s1), "m", 300.0, fa_cap=10.0)
    assert 0.8 < thr1 < 0.9 and (rep1.detected, rep1.false_alarms) == (1, 0)
    assert pool_runs([_run(1, s1)]).spans == {"A": (0, 1439 * 60_000)}  # one seed: unchanged


def test_other_rule_rows_score_what_the_pipeline_scores_under_that_rule() -> None:
    import dataclasses

    from tests.models.test_ensemble import tiny_bundle

    shipped = dataclasses.replace(tiny_bundle(), combination="mean")
    pipeline = Pipeline(bundle=shipped)
    assert methods_of(pipeline)[-3:] == ["ensemble/stacked", "ensemble/max", "ensemble/vote"]
    kw = {"symbols": 2, "hours": 0.5, "events_per_day": 48.0, "batch_size": 500, "progress": False}
    run = run_seed(pipeline, 3, **kw)
    for rule in ("stacked", "vote"):
        direct = run_seed(Pipeline(bundle=dataclasses.replace(shipped, combination=rule)), 3, **kw)
        active = direct.scores["ensemble"] > 0
        assert active.sum() > 1000
        # The pipeline rounds its scores to 6 decimals; the post hoc row is the unrounded combination.
        assert np.abs(run.scores[f"ensemble/{rule}"][active] - direct.scores["ensemble"][active]).max() <= 1e-6
        assert (run.scores[f"ensemble/{rule}"][~active] == 0).all()
    table = markdown({"synthetic": {"calibration_seed": 1, "eval_seeds": [1], "fa_cap": 0.5, "symbol_days": 1.0,
                                    "events": 1, "methods": {"ensemble/vote": {"threshold": 0.9, "pooled": {
                                        "f1": 1.0, "false_alarms_per_symbol_day": 0.0}}}}})
    assert "| ensemble/vote (not shipped) |" in table


def test_an_evaluation_seed_can_use_a_stress_profile_set() -> None:
    kw = {"symbols": 2, "hours": 0.5, "events_per_day": 48.0, "batch_size": 500, "progress": False}
    run = run_seed(Pipeline(), 3, **kw, profile_set="large_tick")
    assert set(run.spans) == {"LTK000/BTC", "LTK001/BTC"}
    assert float(run.prices.max()) <= 2e-5  # priced in a few hundred satoshi
    syn = {"calibration_seed": [1], "eval_seeds": [3], "eval_profiles": "large_tick", "fa_cap": 0.2,
           "symbol_days": 0.04, "events": 1, "methods": {}}
    assert "pooled, symbols of the `large_tick` stress set (" in markdown({"synthetic": syn})


@pytest.mark.parametrize("thr", [0.5, 0.9])
def test_nab_scores_fixed_is_one_of_the_optimiser_candidates(thr: float) -> None:
    ts = np.arange(300, dtype=np.int64) * 60_000_000_000
    layouts = {"f": nab.layout_file(ts, [(ts[200], ts[230])])}
    s = np.zeros(300)
    s[205] = 0.95
    res = nab_cmd.nab_scores(layouts, {"f": s}, nab_cmd.load_profiles(Path("/nonexistent")), thr, 30)
    assert res["fixed"]["standard"] == res["optimised"]["standard"] > 99
