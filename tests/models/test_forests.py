"""Compiled forests against scikit-learn, the reference implementation they replace in the worker."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest, RandomForestClassifier

from models import _native, forests
from models.forests import ISOLATION, PROBA, ROW_CHUNK, FlatForest, average_path_length, compile_forest

INTERPRETED = os.environ.get(_native.CORE_ENV) == "interpreted"


def _data(seed: int, n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, width)) * rng.uniform(0.1, 1000.0, size=width)
    y = ((x[:, 0] > np.median(x[:, 0])) ^ (rng.random(n) < 0.1)).astype(int)
    return x, y


def _queries(seed: int, x: np.ndarray, n: int, nan_share: float, infinite: bool = False) -> np.ndarray:
    """Fresh rows, rows equal to training values (ties with thresholds), extremes, NaNs.

    ``infinite``: also infinities and values beyond float32 (IsolationForest takes them,
    RandomForestClassifier refuses them).
    """
    rng = np.random.default_rng(seed + 1)
    big = [1e300, -np.inf] if infinite else [3e38, -3e38]
    q = np.concatenate([rng.normal(size=(n, x.shape[1])) * x.std(axis=0) + x.mean(axis=0),
                        x[rng.integers(0, len(x), size=n)],
                        np.full((2, x.shape[1]), big[0]), np.full((2, x.shape[1]), big[1])])
    q[rng.random(q.shape) < nan_share] = np.nan
    return q


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), trees=st.integers(1, 12), depth=st.sampled_from([None, 1, 3, 8]),
       leaf=st.integers(1, 10), width=st.integers(1, 6), nan_share=st.sampled_from([0.0, 0.2]))
def test_random_forest_proba_matches_sklearn(seed: int, trees: int, depth: int | None, leaf: int, width: int,
                                             nan_share: float) -> None:
    x, y = _data(seed, 300, width)
    rf = RandomForestClassifier(n_estimators=trees, max_depth=depth, min_samples_leaf=leaf, random_state=seed,
                                n_jobs=1).fit(x, y)
    q = _queries(seed, x, 50, nan_share)
    flat = FlatForest.from_sklearn(rf)
    assert flat.kind == PROBA and flat.n_estimators == trees
    np.testing.assert_allclose(flat.predict_proba(q)[:, 1], rf.predict_proba(q)[:, 1], rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), trees=st.integers(1, 12), samples=st.sampled_from(["auto", 2, 17, 1.0]),
       features=st.sampled_from([1.0, 0.5, 1]), width=st.integers(1, 6), nan_share=st.sampled_from([0.0, 0.2]))
def test_isolation_forest_scores_match_sklearn(seed: int, trees: int, samples: str | int | float,
                                               features: float | int, width: int, nan_share: float) -> None:
    x, _ = _data(seed, 300, width)
    forest = IsolationForest(n_estimators=trees, max_samples=samples, max_features=features, random_state=seed,
                             n_jobs=1).fit(x)
    q = _queries(seed, x, 50, nan_share, infinite=True)
    flat = FlatForest.from_sklearn(forest)
    assert flat.kind == ISOLATION
    # Same operations in the same order: equal to the last bit, not just close.
    np.testing.assert_array_equal(flat.score_samples(q), forest.score_samples(q))


def test_average_path_length_matches_the_isolation_forest_paper() -> None:
    n = np.array([0, 1, 2, 3, 256])
    harmonic = lambda k: np.log(k) + np.euler_gamma  # noqa: E731 - H(k) as the paper approximates it
    expected = [0.0, 0.0, 1.0, 2 * harmonic(2) - 2 * 2 / 3, 2 * harmonic(255) - 2 * 255 / 256]
    np.testing.assert_allclose(average_path_length(n), expected)


def test_arrays_round_trip_and_batches_of_any_size() -> None:
    x, y = _data(3, 400, 4)
    flat = FlatForest.from_sklearn(RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y))
    arrays = flat.to_arrays("rf")
    assert all(a.dtype != object for a in arrays.values())  # storable without pickle
    again = FlatForest.from_arrays(arrays, "rf")
    q = _queries(3, x, 40, 0.1)
    np.testing.assert_array_equal(again.predict_proba(q), flat.predict_proba(q))
    one_by_one = np.concatenate([flat.predict_proba(q[i:i + 1]) for i in range(len(q))])
    np.testing.assert_array_equal(one_by_one, flat.predict_proba(q))  # rows never interact
    assert flat.predict_proba(q[:0]).shape == (0, 2)


def test_batches_longer_than_a_row_chunk_match_sklearn() -> None:
    x, y = _data(5, 400, 4)
    rf = RandomForestClassifier(n_estimators=7, random_state=0).fit(x, y)
    q = _queries(5, x, ROW_CHUNK + 300, 0.1)  # crosses a chunk boundary (NaN rows included)
    np.testing.assert_allclose(FlatForest.from_sklearn(rf).predict_proba(q), rf.predict_proba(q), rtol=0, atol=1e-12)


def test_a_walk_that_sets_finished_pairs_apart_lands_in_sklearns_leaves() -> None:
    # Half the space is one class (shallow leaves), the other half noise (leaves deep down): most
    # (tree, row) pairs finish before mid-depth, so the numpy walk gathers the rest apart (FlatForest._leaf_sums_numpy).
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4000, 4))
    y = np.where(x[:, 0] > 0, 1, rng.integers(0, 2, size=len(x)))
    rf = RandomForestClassifier(n_estimators=20, random_state=7, n_jobs=1).fit(x, y)
    flat = FlatForest.from_sklearn(rf)
    q = np.concatenate([rng.normal(size=(3000, 4)), rng.normal(size=(40, 4)) * 50])
    q[rng.random(q.shape) < 0.02] = np.nan
    finite = q[~np.isnan(q).any(axis=1)]
    # The premise: fewer than half the pairs still inside a tree at mid-depth, and deep pairs left.
    depths = np.concatenate([est.decision_path(finite.astype(np.float32)).sum(axis=1).A1 - 1 for est in rf.estimators_])
    assert (depths > flat.depth // 2).mean() < 0.5 and depths.max() > flat.depth // 2 + 2
    numpy_walk = flat.leaf_sums(q, walk="numpy") / flat.n_estimators
    np.testing.assert_allclose(numpy_walk, rf.predict_proba(q)[:, 1], rtol=0, atol=1e-12)


def test_the_suite_walks_forests_in_c_unless_told_otherwise() -> None:
    # `make test` builds the C walk with the mypyc core: the sklearn comparisons above then test it.
    assert forests.WALK == _native.forest_walk() == ("numpy" if INTERPRETED else "native")


@pytest.mark.skipif(INTERPRETED, reason="the C walk is not on the path of an interpreted-core run")
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), trees=st.integers(1, 12), isolation=st.booleans(),
       depth=st.sampled_from([None, 1, 4, 12]), width=st.integers(1, 6), rows=st.integers(0, 2 * ROW_CHUNK + 3),
       nan_share=st.sampled_from([0.0, 0.05, 0.5]))
def test_the_c_walk_gives_the_numpy_walks_bits(seed: int, trees: int, isolation: bool, depth: int | None, width: int,
                                               rows: int, nan_share: float) -> None:
    x, y = _data(seed, 300, width)
    if isolation:
        fitted = IsolationForest(n_estimators=trees, max_samples=64, max_features=0.5 if width > 1 else 1,
                                 random_state=seed, n_jobs=1).fit(x)
    else:
        fitted = RandomForestClassifier(n_estimators=trees, max_depth=depth, random_state=seed, n_jobs=1).fit(x, y)
    flat = FlatForest.from_sklearn(fitted)
    # Shuffled, so that the extreme rows (infinities for isolation forests) land anywhere, also among
    # the rows after the last block of eight, which the C walk walks one by one.
    q = np.random.default_rng(seed).permutation(_queries(seed, x, rows // 2, nan_share, infinite=isolation))[:rows]
    np.testing.assert_array_equal(flat.leaf_sums(q, walk="native"), flat.leaf_sums(q, walk="numpy"))


def _looping_forest() -> FlatForest:
    """A corrupt tree whose nodes 0 and 1 point at each other: no path ever reaches a leaf."""
    return FlatForest(kind=PROBA, feature=np.array([0, 0, 0]), threshold=np.array([0.0, 0.0, 0.0]),
                      left=np.array([1, 0, 2]), right=np.array([1, 0, 2]), missing_left=np.array([True, True, True]),
                      leaf_value=np.array([0.25, 0.5, 1.0]), roots=np.array([0]), depth=3, n_features_in_=1)


@pytest.mark.parametrize("walk", ["numpy", pytest.param("native", marks=pytest.mark.skipif(
    INTERPRETED, reason="the C walk is not on the path of an interpreted-core run"))])
def test_a_walk_stops_after_depth_steps_even_in_a_corrupt_tree(walk: str) -> None:
    # Three steps from node 0: 1, 0, 1. Both walks stop there and read node 1's value; 17 rows, so that the
    # C walk's blocks of eight and its leftover row are both on this path.
    x = np.array([[0.5], [np.nan]] * 8 + [[-1.0]])
    np.testing.assert_array_equal(_looping_forest().leaf_sums(x, walk=walk), np.full(17, 0.5))


def test_a_node_that_is_its_own_child_on_one_side_only_is_refused() -> None:
    # Node 1 is a leaf on its left side only: the C walk's blocks (which let rows at a leaf step) and its
    # row-by-row loop (which stops at a leaf) would read different leaves.
    with pytest.raises(ValueError, match="its own child on one side only"):
        FlatForest(kind=PROBA, feature=np.array([0, 0, 0]), threshold=np.array([0.0, 0.0, 0.0]),
                   left=np.array([1, 1, 2]), right=np.array([2, 2, 2]), missing_left=np.array([True, True, True]),
                   leaf_value=np.array([0.25, 0.5, 1.0]), roots=np.array([0]), depth=3, n_features_in_=1)


def test_an_unknown_or_unbuilt_walk_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    flat = _looping_forest()
    with pytest.raises(ValueError, match="unknown walk"):
        flat.leaf_sums(np.zeros((1, 1)), walk="gpu")
    monkeypatch.setattr(forests, "_forestwalk", None)
    with pytest.raises(RuntimeError, match="not built"):
        flat.leaf_sums(np.zeros((1, 1)), walk="native")


def test_compile_forest_is_idempotent_and_rejects_what_it_cannot_score() -> None:
    x, y = _data(5, 200, 3)
    flat = compile_forest(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y))
    assert compile_forest(flat) is flat
    with pytest.raises(ValueError, match="binary"):
        FlatForest.from_sklearn(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, np.arange(200) % 3))
    with pytest.raises(TypeError, match="isolation"):
        flat.score_samples(x)
    with pytest.raises(ValueError, match="expected shape"):
        flat.predict_proba(x[:, :2])


def test_corrupt_arrays_are_refused() -> None:
    x, y = _data(6, 200, 3)
    arrays = FlatForest.from_sklearn(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y)).to_arrays("f")
    bad_child = dict(arrays, **{"f.left": arrays["f.left"] + 10**6})
    with pytest.raises(ValueError, match="outside"):
        FlatForest.from_arrays(bad_child, "f")
    bad_feature = dict(arrays, **{"f.feature": arrays["f.feature"] + 50})
    with pytest.raises(ValueError, match="feature"):
        FlatForest.from_arrays(bad_feature, "f")
    short = dict(arrays, **{"f.threshold": arrays["f.threshold"][:-1]})
    with pytest.raises(ValueError, match="nodes"):
        FlatForest.from_arrays(short, "f")
