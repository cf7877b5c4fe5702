"""Periodic retraining of the IsolationForest (models.retraining)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from models.ensemble import ModelBundle
from models.pipeline import Pipeline, PipelineConfig, SymbolSnapshot
from models.retraining import RetrainConfig, Retrainer
from tests.models.test_ensemble import tiny_bundle
from tests.models.test_pipeline import scenario

FAST = dict(every_rows=50, min_rows=50, reservoir_size=200, sample_rate=1.0, quiet_s=60.0, min_interval_s=0.0,
            n_estimators=10)


@functools.cache
def bundle() -> ModelBundle:
    return tiny_bundle()


def _feed(r: Retrainer, n: int, *, alerts: list[tuple[str, int]] | None = None, t0: int = 0) -> list:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(n, len(bundle().iforest.feature_names_in_) if hasattr(bundle().iforest,
                                                                                  "feature_names_in_") else 12))
    times = [t0 + 1000 * i for i in range(n)]
    return [r.observe_rows(rows, ["A"] * n, times, [0.0] * n, alerts or [], 0.9)]


def test_config_validation() -> None:
    for bad in ({"sample_rate": 0.0}, {"min_rows": 5, "reservoir_size": 4}, {"every_rows": 0}, {"quiet_s": -1}):
        with pytest.raises(ValueError):
            RetrainConfig(**bad)  # type: ignore[arg-type]


def test_rows_near_an_alert_or_flagged_are_never_learned() -> None:
    n_feat = bundle().iforest.n_features_in_
    r = Retrainer(bundle(), RetrainConfig(**{**FAST, "every_rows": 10**6}))
    rows = np.arange(300 * n_feat, dtype=float).reshape(300, n_feat)
    times = [1000 * i for i in range(300)]
    scores = [0.95 if i == 10 else 0.0 for i in range(300)]
    r.observe_rows(rows, ["A"] * 300, times, scores, [("A", 150_000)], 0.9)
    learned = {row[0] for row in r.reservoir}
    assert rows[10, 0] not in learned  # flagged
    near = [i for i in range(300) if abs(times[i] - 150_000) < 60_000]
    assert not learned & {rows[i, 0] for i in near}
    # only rows whose quiet period is over (<= latest - 60 s) have graduated
    assert max(learned) <= rows[239, 0]
    assert len(r.reservoir) <= 200


def test_refit_makes_a_new_versioned_bundle_that_the_pipeline_stamps_on_alerts() -> None:
    b = bundle()
    n_feat = b.iforest.n_features_in_
    r = Retrainer(b, RetrainConfig(**FAST))
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(400, n_feat))
    req = r.observe_rows(rows, ["A"] * 400, [1000 * i for i in range(400)], [0.0] * 400, [], 0.9)
    assert req is not None and req.generation == 1
    new = req.fit()
    assert new.version.startswith(f"{b.version}-r1-") and new.version != b.version
    assert new.rforest is b.rforest and new.iforest is not b.iforest
    assert new.calibration["iforest"].a == b.calibration["iforest"].a
    # the reservoir's median row keeps its iforest probability
    med_old = b.calibration["iforest"](np.array([np.median(-b.iforest.score_samples(req.rows))]))
    med_new = new.calibration["iforest"](np.array([np.median(-new.iforest.score_samples(req.rows))]))
    assert med_new == pytest.approx(med_old, rel=1e-9)
    assert req.fit().version == new.version  # deterministic
    # the next generation builds on the adopted bundle and names the original base
    r.adopt(new)
    req2 = r.observe_rows(rows, ["A"] * 400, [500_000 + 1000 * i for i in range(400)], [0.0] * 400, [], 0.9)
    assert req2 is not None and req2.fit().version.startswith(f"{b.version}-r2-")
    # alerts of a pipeline running the new bundle carry its version
    ticks, _ = scenario()
    res = Pipeline(PipelineConfig(alert_threshold=0.5), new).process({}, list(ticks))
    assert res.alerts and all(a.model_version == new.version for a in res.alerts)


def test_observe_takes_batch_results() -> None:
    ticks, _ = scenario()
    b = bundle()
    r = Retrainer(b, RetrainConfig(**{**FAST, "every_rows": 10**6, "quiet_s": 0.0}))
    snaps: dict[str, SymbolSnapshot] = {}
    p = Pipeline(PipelineConfig(alert_threshold=0.5), b)
    for lo in range(0, 4000, 1000):
        batch = list(ticks[lo:lo + 1000])
        res = p.process(snaps, batch)
        assert len(res.model_rows) == len(res.model_row_ticks) == len(batch)
        assert r.observe(res, batch, 0.5) is None
    assert 0 < len(r.reservoir) <= 200
