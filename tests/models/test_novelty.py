"""The novelty window against a brute-force reference, and what it changes in the statistical layer."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.detectors.novelty import EMPTY, QUANTUM, NoveltyWindow
from models.detectors.statistical import StatisticalConfig, StatisticalDetector
from tests.models.test_detectors import feats, normal_stream, run

BUCKET_MS = 1_000
N_BUCKETS = 4

# Ticks as (time step, value): steps of 0 .. 3 buckets, now and then backwards (late ticks).
steps = st.lists(st.tuples(st.integers(-1_500, 3 * BUCKET_MS + 500), st.floats(-60.0, 60.0)), max_size=80)


def brute_limit(pushed: list[tuple[int, float]], newest: int | None, t: int) -> float:
    """Largest value pushed into a bucket the window of ``t`` covers; a late tick sits in the newest bucket."""
    b = t // BUCKET_MS
    if newest is not None and b < newest:
        b = newest
    return max((v for tb, v in pushed if b - N_BUCKETS < tb <= b), default=EMPTY)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_limits_match_a_brute_force_window(ticks: list[tuple[int, float]]) -> None:
    w = NoveltyWindow(features=1, window_ms=BUCKET_MS * N_BUCKETS, n_buckets=N_BUCKETS)
    pushed: list[tuple[int, float]] = []
    newest: int | None = None
    t = 10 * BUCKET_MS
    for step, value in ticks:
        t = max(0, t + step)
        assert w.limits(t)[0] == brute_limit(pushed, newest, t)
        w.push(t, [value])
        b = t // BUCKET_MS
        newest = b if newest is None or b > newest else newest
        pushed.append((newest, math.ceil(value * QUANTUM) / QUANTUM))  # late: in the newest bucket; rounded up
        restored = NoveltyWindow.from_state(json.loads(json.dumps(w.to_state())), 1, BUCKET_MS * N_BUCKETS, N_BUCKETS)
        assert restored.limits(t) == w.limits(t) and restored.to_state() == w.to_state()


def test_a_state_of_another_shape_starts_empty() -> None:
    w = NoveltyWindow(features=2, window_ms=4_000, n_buckets=4)
    w.push(5_000, [1.0, 2.0])
    assert NoveltyWindow.from_state(w.to_state(), 3, 4_000, 4).limits(5_000) == [EMPTY] * 3
    assert NoveltyWindow.from_state(w.to_state(), 2, 8_000, 4).limits(5_000) == [EMPTY] * 2  # other buckets
    assert NoveltyWindow.from_state(w.to_state(), 2, 4_000, 4).limits(5_000) == [1.0, 2.0]


@pytest.mark.parametrize(("features", "window_ms", "n_buckets"), [(1, 10, 1), (1, 3, 4)])
def test_bad_shapes_are_refused(features: int, window_ms: int, n_buckets: int) -> None:
    with pytest.raises(ValueError):
        NoveltyWindow(features, window_ms, n_buckets)


def test_a_move_that_recurs_within_the_window_fires_once() -> None:
    """A price jump, then a slightly smaller one 20 minutes later: both far past the lone-z centre, but
    only the first is a new extreme of the window; with novelty off both fire."""
    fired = {}
    for window_s in (7200.0, 0.0):
        det = StatisticalDetector(StatisticalConfig(novelty_window_s=window_s))
        stream = normal_stream(300, 0)
        run(det, stream)
        t = stream[-1].timestamp
        scores = []
        for k in range(2):
            jump = feats(t + 2_000 + k * 1_200_000, price_change_pct=3.0 - 0.5 * k)
            r = det.score_one_raw(jump)
            det.learn_one(jump, r)
            scores.append((round(r.score, 3), r.rule))
            run(det, normal_stream(100, k + 1, start=jump.timestamp + 1_000))
        fired[window_s] = scores
    assert fired[0.0][0][1] == fired[0.0][1][1] == "z_price_change_pct"
    assert fired[0.0][0][0] >= 0.5 and fired[0.0][1][0] >= 0.5
    assert fired[7200.0][0] == fired[0.0][0]  # the first jump is new: same score, same rule
    assert fired[7200.0][1][0] < 0.5 and fired[7200.0][1][1] != "z_price_change_pct", fired


def test_a_larger_move_is_new_again() -> None:
    det = StatisticalDetector()
    stream = normal_stream(300, 0)
    run(det, stream)
    t = stream[-1].timestamp
    first = feats(t + 2_000, price_change_pct=3.0)
    det.learn_one(first, det.score_one_raw(first))
    bigger = feats(t + 60_000, price_change_pct=6.0)
    r = det.score_one_raw(bigger)
    assert r.score >= 0.5 and r.rule == "z_price_change_pct"
