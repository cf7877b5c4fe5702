# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The forest walk in C: every (tree, row) pair walked to its leaf in a plain loop.

The numpy walk in :meth:`models.forests.FlatForest._leaf_sums_numpy` is the reference; this is the
same walk, one pair at a time instead of one level of every pair at a time. Why: numpy pays for
every level of every pair, with temporaries between levels, ~6-10 us a row for each shipped forest;
here a pair stops at its leaf and nothing is allocated, ~3 us a row
(``python -m benchmarks.forest_scoring --walk numpy|native``).

Same arithmetic, so the same bits (``tests/models/test_forests.py``): ``x`` arrives already rounded
through float32, a value above the node's threshold goes right, a NaN goes the way
``missing_left`` says, and each row's leaf values are added to ``total`` tree by tree, in tree
order, as the numpy walk adds them. Trees are the outer loop, so one tree's nodes stay in cache
while every row of the chunk walks it.

Bounds are not checked here: :class:`~models.forests.FlatForest` checks at construction that every
child, root and split feature is inside its arrays, and ``leaf_sums`` checks ``x``'s width. A walk
takes at most ``depth`` steps, as the numpy walk does, so a malformed tree cannot loop forever.
"""

from libc.math cimport isnan


def add_leaf_values(const double[:, ::1] x, const long long[::1] feature, const double[::1] threshold,
                    const Py_ssize_t[::1] children, const unsigned char[::1] missing_left,
                    const unsigned char[::1] is_leaf, const double[::1] leaf_value,
                    const long long[::1] roots, Py_ssize_t depth, double[::1] total):
    """Add to ``total[r]``, for each tree in order, the value of the leaf row ``x[r]`` lands in."""
    cdef Py_ssize_t n = x.shape[0], trees = roots.shape[0], t, r, step, node
    cdef double v
    if total.shape[0] != n:
        raise ValueError(f"total has {total.shape[0]} rows, x has {n}")
    with nogil:
        for t in range(trees):
            for r in range(n):
                node = roots[t]
                for step in range(depth):
                    if is_leaf[node]:
                        break
                    v = x[r, feature[node]]
                    if isnan(v):
                        node = children[2 * node + (0 if missing_left[node] else 1)]
                    elif v > threshold[node]:
                        node = children[2 * node + 1]
                    else:
                        node = children[2 * node]
                total[r] += leaf_value[node]
