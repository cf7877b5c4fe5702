# cython: language_level=3, wraparound=False, initializedcheck=False
"""The forests' input rows, from the pipeline's lists of floats into one float64 array, in C.

``np.asarray(rows, dtype=np.float64)`` on a list of per-tick lists first walks the nested lists to
discover their shape and types, then converts: 0.28 us a row of 15 values. Here the width is given,
each row is checked to be a list of that length, and each value is read with ``PyFloat_AsDouble``
(what ``float(v)`` does) straight into the array: 0.06 us a row (2026-12-06, Intel Xeon,
``python -m benchmarks.row_packing``). :func:`models.ensemble.rows_array` uses it for a list of lists
when built and ``np.asarray`` otherwise; both give the same bits (``tests/models/test_ensemble.py``).

Bounds stay checked: ``PyFloat_AsDouble`` may run a value's ``__float__``, which could shrink the list
being read; the checks cost nothing measurable next to the conversion.
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
