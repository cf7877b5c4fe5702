# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The forests' input rows, from the pipeline's lists of floats into one float64 array, in C.

``np.asarray(rows, dtype=np.float64)`` on a list of per-tick lists first walks the nested lists to
discover their shape and types, then converts: ~0.47 us a row of 15 values. Here the width is given,
each row is checked to be a list of that length, and each value is read with ``PyFloat_AsDouble``
(what ``float(v)`` does) straight into the array: ~0.09 us a row (2026-12-06, Intel Xeon; the
README's performance section has the command). :func:`models.ensemble.model_scores` uses it when
built and ``np.asarray`` otherwise; both give the same array (``tests/models/test_ensemble.py``).
"""

import numpy as np

from cpython.float cimport PyFloat_AsDouble


def pack_rows(list rows, Py_ssize_t width):
    """``rows`` (a list of lists of ``width`` numbers) as a C-contiguous float64 array (n, width)."""
    cdef Py_ssize_t n = len(rows), i, j
    cdef list row
    out = np.empty((n, width), dtype=np.float64)
    cdef double[:, ::1] values = out
    for i in range(n):
        row = rows[i]  # a typed assignment: anything but a list raises TypeError
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} values, expected {width}")
        for j in range(width):
            values[i, j] = PyFloat_AsDouble(row[j])
    return out
