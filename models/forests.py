"""Fitted scikit-learn forests as flat numpy arrays, scored without scikit-learn.

Why: importing ``sklearn.ensemble`` (it pulls in SciPy) costs a worker about 100 MB of RSS, and
scikit-learn's forest ``predict_proba`` spends ~20 ms per call on thread-pool set-up, which
dominates the small micro-batches a low-latency worker scores. A worker only *evaluates* trees,
so training compiles each fitted forest into a few arrays and the worker walks every tree of the
forest for every row of the batch at once: one numpy step per tree level.

The arithmetic replicates scikit-learn's, so scores agree to rounding (checked against
scikit-learn by ``tests/models/test_forests.py``):

* inputs are cast to float32 before comparing with the float64 thresholds (sklearn's ``DTYPE``);
* a NaN input goes the way the node's ``missing_go_to_left`` says;
* ``RandomForestClassifier.predict_proba``: per-tree class fractions, summed over trees, divided
  by the number of trees;
* ``IsolationForest.score_samples``: per-tree ``depth(leaf) + c(n_leaf) - 1`` summed over trees,
  ``-2 ** -(sum / (n_trees * c(max_samples)))`` with ``c`` the average path length of a BST search.

Arrays only (``np.savez`` / ``np.load(allow_pickle=False)``): nothing executable is stored.

Two walks compute the same bits: a C loop (``models/_forestwalk.pyx``, built by ``make install``
beside the mypyc core and used whenever that build is fresh, :data:`WALK` says which) and the numpy
walk below, one step per tree level for every row at once, which is the reference the C loop is
tested against and what runs without a compiler or under ``CRYPTOTRACE_CORE=interpreted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # found only on a fresh compiled build's path (models._native) or in a compiled wheel
    from models import _forestwalk
except ImportError:  # pragma: no cover - exercised by the interpreted-core runs
    _forestwalk = None  # type: ignore[assignment]

#: Which walk scores rows in this process: ``native`` (the C loop) or ``numpy``.
WALK = "numpy" if _forestwalk is None else "native"

PROBA = "proba"  # RandomForestClassifier: probability of class 1
ISOLATION = "isolation"  # IsolationForest: score_samples (higher is more normal)
KINDS = (PROBA, ISOLATION)

ROW_CHUNK = 1024  # rows walked at once (see FlatForest.leaf_sums)
_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "leaf_value", "roots")


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Average path length of an unsuccessful BST search among ``n`` points (Liu et al. 2008)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@dataclass(frozen=True, eq=False)
class FlatForest:
    """Every tree of a forest in shared node arrays; leaves point at themselves.

    ``feature``/``threshold``/``left``/``right``/``missing_left`` describe split nodes (node ids
    are global across trees); ``leaf_value`` is what a row landing in that leaf adds to the sum
    over trees; ``roots`` holds each tree's root id; ``depth`` is the deepest tree's depth, the
    number of steps after which every row has reached a leaf of every tree.
    """

    kind: str
    feature: np.ndarray  # int64 (nodes,), column of x compared at the node (0 at leaves)
    threshold: np.ndarray  # float64 (nodes,)
    left: np.ndarray  # int64 (nodes,)
    right: np.ndarray  # int64 (nodes,)
    missing_left: np.ndarray  # bool (nodes,): NaN goes left
    leaf_value: np.ndarray  # float64 (nodes,)
    roots: np.ndarray  # int64 (trees,)
    depth: int
    n_features_in_: int
    denominator: float = 1.0  # isolation: n_trees * c(max_samples)
    # Derived in __post_init__, not stored: both children of node i side by side (left at 2i, right
    # at 2i + 1), so a walk step is one gather at 2 * node + went_right instead of two gathers and a
    # select (~15-20 % less per row on the shipped model, benchmarks/forest_scoring.py).
    _children: np.ndarray = field(init=False, repr=False)
    # Also derived: True at leaves (a leaf is its own child), for the walk's compaction.
    _is_leaf: np.ndarray = field(init=False, repr=False)
    # The node arrays as the C walk takes them, in its argument order: C-contiguous, int64 ids, bytes
    # for the booleans (typed memoryviews have no bool).
    _native_nodes: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown forest kind {self.kind!r}; expected one of {KINDS}")
        n = len(self.feature)
        for name in _ARRAYS[1:-1]:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} nodes, feature has {n}")
        for name in ("left", "right", "roots"):
            ids = getattr(self, name)
            if len(ids) and (ids.min() < 0 or ids.max() >= n):
                raise ValueError(f"{name} points outside the node arrays")
        if len(self.roots) == 0:
            raise ValueError("a forest needs at least one tree")
        if n and (self.feature.min() < 0 or self.feature.max() >= self.n_features_in_):
            raise ValueError("a split refers to a feature the forest was not fitted on")
        ids = np.arange(n)
        if np.any((self.left == ids) != (self.right == ids)):
            # A leaf is its own child on both sides: the C walk lets rows at leaves take steps.
            raise ValueError("a node is its own child on one side only")
        children = np.empty(2 * n, dtype=np.intp)
        children[0::2], children[1::2] = self.left, self.right
        object.__setattr__(self, "_children", children)
        object.__setattr__(self, "_is_leaf", self.left == np.arange(n))
        object.__setattr__(self, "_native_nodes", (
            np.ascontiguousarray(self.feature, dtype=np.int64), np.ascontiguousarray(self.threshold, dtype=np.float64),
            children, np.ascontiguousarray(self.missing_left, dtype=bool).view(np.uint8),
            self._is_leaf.view(np.uint8), np.ascontiguousarray(self.leaf_value, dtype=np.float64),
            np.ascontiguousarray(self.roots, dtype=np.int64)))

    @property
    def n_estimators(self) -> int:
        return len(self.roots)

    # ------------------------------------------------------------------ compile and store
    @classmethod
    def from_sklearn(cls, forest: Any) -> FlatForest:
        """Compile a fitted ``RandomForestClassifier`` (binary) or ``IsolationForest``."""
        isolation = hasattr(forest, "estimators_features_") and hasattr(forest, "max_samples_")
        n_in = int(forest.n_features_in_)
        subset = isolation and int(forest._max_features) != n_in
        parts: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
        offset, depth = 0, 0
        for i, est in enumerate(forest.estimators_):
            tree = est.tree_
            count = int(tree.node_count)
            ids = np.arange(count)
            leaf = tree.children_left == -1
            feature = np.where(leaf, 0, tree.feature).astype(np.int64)
            if subset:  # the tree was fitted on a column subset: map to x's columns
                feature = np.where(leaf, 0, np.asarray(forest.estimators_features_[i])[feature])
            parts["feature"].append(feature)
            parts["threshold"].append(np.asarray(tree.threshold, dtype=np.float64))
            parts["left"].append(np.where(leaf, ids, tree.children_left) + offset)
            parts["right"].append(np.where(leaf, ids, tree.children_right) + offset)
            parts["missing_left"].append(np.asarray(tree.missing_go_to_left, dtype=bool))
            if isolation:
                # The same expression, in the same order, as IsolationForest's per-tree depths.
                value = (tree.compute_node_depths() + average_path_length(tree.n_node_samples)) - 1.0
            else:
                if tree.n_outputs != 1 or tree.value.shape[2] != 2:
                    raise ValueError("only binary single-output classifiers can be compiled")
                fractions = tree.value[:, 0, :2]
                norm = fractions.sum(axis=1)
                norm[norm == 0.0] = 1.0
                value = fractions[:, 1] / norm
            parts["leaf_value"].append(np.asarray(value, dtype=np.float64))
            parts["roots"].append(np.array([offset]))
            offset += count
            depth = max(depth, int(tree.max_depth))
        arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        denominator = 1.0
        if isolation:
            denominator = len(forest.estimators_) * float(average_path_length(np.array([forest._max_samples]))[0])
        return cls(kind=ISOLATION if isolation else PROBA, depth=depth, n_features_in_=n_in,
                   denominator=denominator, **arrays)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (no object dtype, so loading needs no pickle)."""
        out = {f"{prefix}.{name}": getattr(self, name) for name in _ARRAYS}
        out[f"{prefix}.meta"] = np.array([self.depth, self.n_features_in_, self.denominator], dtype=np.float64)
        out[f"{prefix}.kind"] = np.array(self.kind)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any, prefix: str) -> FlatForest:
        depth, n_in, denominator = (float(v) for v in arrays[f"{prefix}.meta"])
        kind = str(np.asarray(arrays[f"{prefix}.kind"]).reshape(-1)[0])
        dtypes = {"threshold": np.float64, "leaf_value": np.float64, "missing_left": bool}
        fields = {name: np.ascontiguousarray(arrays[f"{prefix}.{name}"], dtype=dtypes.get(name, np.int64))
                  for name in _ARRAYS}
        return cls(kind=kind, depth=int(depth), n_features_in_=int(n_in), denominator=denominator, **fields)

    # ------------------------------------------------------------------ scoring
    def leaf_sums(self, x: np.ndarray, walk: str = WALK) -> np.ndarray:
        """Sum over trees, in tree order, of the leaf value each row of ``x`` lands in: shape (n,).

        ``walk`` picks the C loop (``native``, when built) or the numpy walk; both give the same bits.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected shape (n, {self.n_features_in_}), got {x.shape}")
        if walk == "native":
            if _forestwalk is None:
                raise RuntimeError("the native forest walk is not built (`make install`)")
            total = np.zeros(x.shape[0])
            feature, threshold, children, missing_left, is_leaf, leaf_value, roots = self._native_nodes
            _forestwalk.add_leaf_values(_as_sklearn_compares(x), feature, threshold, children, missing_left, is_leaf,
                                        leaf_value, roots, self.depth, total)
            return total
        if walk != "numpy":
            raise ValueError(f"unknown walk {walk!r}; expected 'native' or 'numpy'")
        n = x.shape[0]
        total = np.zeros(n)
        # Rows in chunks: the walk holds a few (trees x rows) arrays, ~100 MB for 25k rows and
        # 100 trees in one go (the batched benchmark's peak RSS rose by 180 MB), 4 MB per 1,024-row
        # chunk, which also stays in cache: 2x faster per row on the shipped model.
        for lo in range(0, n, ROW_CHUNK):
            total[lo:lo + ROW_CHUNK] = self._leaf_sums_numpy(x[lo:lo + ROW_CHUNK])
        return total

    def _leaf_sums_numpy(self, x: np.ndarray) -> np.ndarray:
        n, width = x.shape
        flat = _as_sklearn_compares(x).ravel()
        any_nan = bool(np.isnan(flat).any())
        row_base: np.ndarray = np.arange(n, dtype=np.intp) * width
        nodes = np.repeat(self.roots[:, None], n, axis=1)  # (trees, n)
        children, feature, threshold = self._children, self.feature, self.threshold
        # A (tree, row) pair that reached its leaf stops moving, but still costs every level walked:
        # rows of the shipped RandomForest end ~10 levels down its deepest tree's 16. So from
        # mid-depth on, every other level, once fewer than half the pairs walked are still inside
        # a tree, those are gathered apart and only they walk on (``kept``: their places among all
        # pairs, tree-major); every pair takes the same steps, so lands in the same leaf. Isolation
        # trees end almost every path at their height limit: nothing to gather, so no check.
        final: np.ndarray | None = None
        kept: np.ndarray | None = None
        compact_from = self.depth // 2 if self.kind == PROBA else self.depth
        for level in range(self.depth):
            if level >= compact_from and level % 2 == 0:
                inside = ~self._is_leaf.take(nodes)
                if np.count_nonzero(inside) * 2 < inside.size:
                    if final is None or kept is None:
                        final, kept = nodes.ravel(), np.flatnonzero(inside)
                        row_base = (kept % n) * width
                    else:
                        final[kept] = nodes
                        kept, row_base = kept[inside], row_base[inside]
                    nodes = nodes.ravel()[inside.ravel()]
            values = flat.take(row_base + feature.take(nodes))
            go_right = values > threshold.take(nodes)  # not (<=): a NaN goes left here, fixed below
            if any_nan:
                missing = np.isnan(values)
                go_right[missing] = ~self.missing_left.take(nodes[missing])
            step = nodes << 1
            step += go_right
            nodes = children.take(step)
        if final is None or kept is None:
            final = nodes.ravel()
        else:
            final[kept] = nodes
        leaf_values = self.leaf_value.take(final).reshape(len(self.roots), n)
        total = np.zeros(n)
        for row in leaf_values:  # tree by tree, the order scikit-learn adds them in
            total += row
        return total

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``RandomForestClassifier.predict_proba``: shape (n, 2)."""
        if self.kind != PROBA:
            raise TypeError("predict_proba needs a classifier forest")
        p1 = self.leaf_sums(x) / self.n_estimators
        return np.column_stack([1.0 - p1, p1])

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        """``IsolationForest.score_samples``: the opposite of the anomaly score (lower is more abnormal)."""
        if self.kind != ISOLATION:
            raise TypeError("score_samples needs an isolation forest")
        depths = self.leaf_sums(x)
        if self.denominator == 0.0:  # one training sample: scikit-learn takes the ratio as 1
            return -np.full_like(depths, 0.5)
        return -(2.0 ** (-(depths / self.denominator)))


def _as_sklearn_compares(x: np.ndarray) -> np.ndarray:
    """``x`` rounded through float32, as float64, C-contiguous: what sklearn compares with its
    float64 thresholds (sklearn's ``DTYPE``; beyond float32's range: +-inf)."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(x, dtype=np.float32).astype(np.float64)


def compile_forest(forest: Any) -> FlatForest:
    """``FlatForest.from_sklearn`` unless it is compiled already."""
    return forest if isinstance(forest, FlatForest) else FlatForest.from_sklearn(forest)
