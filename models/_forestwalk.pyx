# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The forest walk in C: every (tree, row) pair walked to its leaf, eight rows of a block in step.

The numpy walk in :meth:`models.forests.FlatForest._leaf_sums_numpy` is the reference; this is the
same walk, done a few rows at a time instead of one level of every pair at a time. Why: numpy pays for
every level of every pair, with temporaries between levels, ~6-10 us a row for each shipped forest;
here nothing is allocated and a block stops once its rows are all at their leaves
(``python -m benchmarks.forest_scoring --walk numpy|native``).

Rows walk a tree in blocks of ``BLOCK``, in step: each step moves every row of the block one level
down, without a branch on the comparison (the child is ``children[2 * node + went_right]``). A
comparison goes either way about half the time, so a branch on it is mispredicted about every
other level, and one row's walk is a chain of dependent loads; eight independent chains side by
side keep the CPU busy while each waits. Leaves point at themselves (``FlatForest``), so a row
that reached its leaf stays there while the others walk on (``FlatForest`` refuses a node that is its
own left child but not its own right child, which would send a row elsewhere from its leaf); the block stops when all of its rows
are at leaves. Rows left over after the last full block (all of them in a batch under ``BLOCK``
rows) walk alone with the branching loop, which speculation makes faster for one row.
Measured on the shipped model's input rows (shuffled), 1,000-row batches: RandomForest 2.37 -> 1.52 us
a row, IsolationForest 2.36 -> 1.09; in the worker's time-ordered batches, where the branch predictor
learns consecutive rows' paths, less (the README's "Compiled core" has the figures and commands).

Same arithmetic, so the same bits (``tests/models/test_forests.py``): ``x`` arrives already rounded
through float32, a value above the node's threshold goes right, a NaN goes the way
``missing_left`` says, and each row's leaf values are added to ``total`` tree by tree, in tree
order, as the numpy walk adds them. Trees are the outer loop, so one tree's nodes stay in cache
while every row of the batch walks it.

Bounds are not checked here: :class:`~models.forests.FlatForest` checks at construction that every
child, root and split feature is inside its arrays, and ``leaf_sums`` checks ``x``'s width. A walk
takes at most ``depth`` steps, as the numpy walk does, so a malformed tree cannot loop forever.
"""

from libc.math cimport isnan
from libc.stdlib cimport free, malloc

DEF BLOCK = 8  # rows walked in step: 4 was slower, 16 no faster (2026-12-06, both forests)


cdef inline Py_ssize_t _leaf_of_row(const double[:, ::1] x, Py_ssize_t r, const long long[::1] feature,
                                    const double[::1] threshold, const Py_ssize_t[::1] children,
                                    const unsigned char[::1] missing_left, const unsigned char[::1] is_leaf,
                                    Py_ssize_t node, Py_ssize_t depth) noexcept nogil:
    """The leaf row ``x[r]`` reaches from ``node``, one row alone."""
    cdef Py_ssize_t step
    cdef double v
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
    return node


cdef inline bint _block_has_nan(const double[:, ::1] x, Py_ssize_t r0, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t r, f
    for r in range(r0, r0 + rows):
        for f in range(x.shape[1]):
            if isnan(x[r, f]):
                return True
    return False


def add_leaf_values(const double[:, ::1] x, const long long[::1] feature, const double[::1] threshold,
                    const Py_ssize_t[::1] children, const unsigned char[::1] missing_left,
                    const unsigned char[::1] is_leaf, const double[::1] leaf_value,
                    const long long[::1] roots, Py_ssize_t depth, double[::1] total):
    """Add to ``total[r]``, for each tree in order, the value of the leaf row ``x[r]`` lands in.

    A block of rows without a NaN takes the lean step: no missing-value term, and a row that did not
    move is at its leaf (leaves point at themselves, a split never at itself), so the leaf flags are
    not read either. A block with a NaN takes the full step. Both send every row to the same leaf.
    """
    cdef Py_ssize_t n = x.shape[0], trees = roots.shape[0], t, r0, r, j, step, node, nxt, root, b
    cdef Py_ssize_t whole_blocks = n - n % BLOCK
    cdef Py_ssize_t nodes[BLOCK]
    cdef double v
    cdef unsigned char walking
    cdef unsigned char *nan_block
    if total.shape[0] != n:
        raise ValueError(f"total has {total.shape[0]} rows, x has {n}")
    nan_block = <unsigned char *> malloc(whole_blocks // BLOCK + 1)
    if nan_block == NULL:
        raise MemoryError()
    try:
        with nogil:
            for b in range(whole_blocks // BLOCK):
                nan_block[b] = _block_has_nan(x, b * BLOCK, BLOCK)
            for t in range(trees):
                root = roots[t]
                for r0 in range(0, whole_blocks, BLOCK):
                    for j in range(BLOCK):
                        nodes[j] = root
                    if nan_block[r0 // BLOCK]:
                        for step in range(depth):
                            walking = 0
                            for j in range(BLOCK):
                                node = nodes[j]
                                walking |= is_leaf[node] ^ 1
                                v = x[r0 + j, feature[node]]
                                # went right: above the threshold, or a NaN where missing values go right
                                # (a NaN compares false, so the two terms are never both 1; each is 0 or 1).
                                nodes[j] = children[2 * node + <Py_ssize_t>(v > threshold[node])
                                                    + <Py_ssize_t>((v != v) & (missing_left[node] == 0))]
                            if not walking:
                                break
                    else:
                        for step in range(depth):
                            walking = 0
                            for j in range(BLOCK):
                                node = nodes[j]
                                nxt = children[2 * node + <Py_ssize_t>(x[r0 + j, feature[node]] > threshold[node])]
                                walking |= nxt != node
                                nodes[j] = nxt
                            if not walking:
                                break
                    for j in range(BLOCK):
                        total[r0 + j] += leaf_value[nodes[j]]
                for r in range(whole_blocks, n):
                    total[r] += leaf_value[_leaf_of_row(x, r, feature, threshold, children, missing_left, is_leaf,
                                                        root, depth)]
    finally:
        free(nan_block)
