"""Numenta Anomaly Benchmark (NAB) scoring: pure functions, numpy + stdlib, no file I/O.

The rules are those of NAB's current scorer (``nab/sweeper.py``) and reproduce the published
``results/final_results.json`` from the published per-row anomaly scores:

* **Probation.** The first ``min(floor(0.15 * n), ceil(0.15 * 5000))`` = ``min(floor(0.15 n), 750)``
  rows of an ``n``-row file are not scored: a detection there counts for nothing, and a window whose
  rows all lie in probation is dropped (neither detected nor missed).
* **Detection.** A scored row is a detection when its anomaly score is ``>= threshold`` (NaN never is).
* **Windows.** A window ``[l, r]`` (row indices, width ``w = r - l + 1``) counts once. Its earliest
  detection at row ``i`` is worth ``A_TP * sigma(-(r - i + 1) / w) / sigma(-1)``, so a detection on the
  first row earns exactly ``A_TP`` and one on the last row ``A_TP * sigma(-1/w) / sigma(-1)``; later
  detections in the same window add nothing. A window with no detection costs ``-A_FN``.
* **False positives.** Every detection outside all windows is scored against the closest window
  that ended before it (windows inside probation included): ``A_FP * sigma(|i - r| / (w - 1))``,
  which is near 0 just after the window and tends to ``-A_FP`` far away. A detection before the
  first window costs ``-A_FP``; so does any detection after a one-row window (``w - 1 = 0``).
* **Scaled sigmoid.** ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and exactly ``-1`` for ``y >= 3``.
* **Normalised score.** Raw scores are summed over the corpus and mapped to
  ``100 * (raw - raw_null) / (raw_perfect - raw_null)``, with ``raw_null = -A_FN * W`` (never alarm)
  and ``raw_perfect = A_TP * W`` (one detection on the first row of each window), ``W`` the number of
  scored windows. Never-alarm scores 0 and the perfect detector 100.

A window's limits are timestamps; they are mapped to rows by position, as NAB does: ``l`` is the first
row whose timestamp is ``>= start`` and ``r`` the first row from ``l`` on whose timestamp equals ``end``
(or the last row before one exceeds it). Timestamps need not be sorted (NAB files hold duplicates).

The threshold optimiser (:func:`optimise_threshold`) sorts the corpus scores once and sweeps every
distinct score as a threshold, like NAB's sweeper, in ``O(N log N)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

PROBATION_PERCENT = 0.15
_PROBATION_CAP_ROWS = 5000  # the cap is PROBATION_PERCENT * 5000 = 750 rows
_FAR = 3.0  # relative positions >= this score exactly -1

#: A window's (start, end) limits: datetime64, int nanoseconds, ISO strings or datetimes.
Window = tuple[Any, Any]


@dataclass(frozen=True, slots=True)
class CostProfile:
    """NAB cost weights (``config/profiles.json`` ``CostMatrix``): A_TP, A_FP, A_FN."""

    tp_weight: float = 1.0
    fp_weight: float = 0.11
    fn_weight: float = 1.0
    name: str = "standard"


STANDARD = CostProfile(1.0, 0.11, 1.0, "standard")
REWARD_LOW_FP_RATE = CostProfile(1.0, 0.22, 1.0, "reward_low_FP_rate")
REWARD_LOW_FN_RATE = CostProfile(1.0, 0.11, 2.0, "reward_low_FN_rate")


def scaled_sigmoid(position: ArrayLike) -> NDArray[np.float64]:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``, exactly ``-1`` for ``y >= 3``.

    Parameters
    ----------
    position : array_like
        Relative position(s) ``y``: in ``[-1, 0)`` inside a window, ``> 0`` past one.

    Returns
    -------
    numpy.ndarray
        Values in ``[-1, 1)``, same shape as ``position``.

    Examples
    --------
    >>> round(float(scaled_sigmoid(-1.0)), 5), float(scaled_sigmoid(0.0)), float(scaled_sigmoid(3.0))
    (0.98661, 0.0, -1.0)
    """
    y = np.asarray(position, dtype=np.float64)
    value = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, _FAR))) - 1.0
    return np.asarray(np.where(y >= _FAR, -1.0, value), dtype=np.float64)


_MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows NAB leaves unscored: ``min(floor(p n), ceil(p 5000))``.

    Examples
    --------
    >>> probation_length(1000), probation_length(22695)
    (150, 750)
    """
    return int(min(math.floor(probation_percent * n_rows), math.ceil(probation_percent * _PROBATION_CAP_ROWS)))


def to_ns(values: ArrayLike) -> NDArray[np.int64]:
    """Convert timestamps (datetime64, int nanoseconds, ISO strings, datetimes) to int64 nanoseconds."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return np.asarray(arr.astype("datetime64[ns]").view(np.int64), dtype=np.int64)


def window_rows(timestamps: ArrayLike, windows: Sequence[Window]) -> list[tuple[int, int]]:
    """Map window limits to inclusive row ranges ``(l, r)``, sorted by start.

    Parameters
    ----------
    timestamps : array_like
        The file's row timestamps (see :func:`to_ns`), in file order.
    windows : sequence of (start, end)
        Window limits as timestamps.

    Returns
    -------
    list of (int, int)
        Row limits; ``l`` is the first row at or after ``start``, ``r`` the first row from ``l`` on at
        ``end`` (else the last row before passing ``end``).

    Raises
    ------
    ValueError
        If a window holds no row, has ``end < start``, or overlaps another window.
    """
    ts = to_ns(timestamps)
    limits = sorted((int(to_ns([a])[0]), int(to_ns([b])[0])) for a, b in windows)
    rows: list[tuple[int, int]] = []
    for start, end in limits:
        if end < start:
            raise ValueError(f"window end precedes its start: {start} > {end}")
        at_or_after = np.flatnonzero(ts >= start)
        if at_or_after.size == 0 or ts[at_or_after[0]] > end:
            raise ValueError(f"window [{start}, {end}] (ns) holds no row")
        left = int(at_or_after[0])
        reached = np.flatnonzero(ts[left:] >= end)
        if reached.size == 0:
            right = ts.size - 1
        else:
            right = left + int(reached[0])
            if ts[right] > end:
                right -= 1
        if rows and left <= rows[-1][1]:
            raise ValueError(f"windows overlap at rows {rows[-1]} and {(left, right)}")
        rows.append((left, right))
    return rows


@dataclass(frozen=True, slots=True)
class FileLayout:
    """Everything about one file that does not depend on the detector or the profile.

    Attributes
    ----------
    n_rows : int
        Rows in the file.
    probation : int
        Leading rows left unscored.
    windows : tuple of (int, int)
        Inclusive row limits of each window, sorted.
    window_id : numpy.ndarray
        Per row: index into ``windows``, or -1 outside every window.
    unit_value : numpy.ndarray
        Per row: worth of a detection there before weighting, ``sigma(...) / sigma(-1)`` inside a
        window (times A_TP) and ``sigma(...)`` outside (times A_FP, non-positive).
    scored_windows : numpy.ndarray
        Per window: True if at least one of its rows lies after probation.
    """

    n_rows: int
    probation: int
    windows: tuple[tuple[int, int], ...]
    window_id: NDArray[np.int64]
    unit_value: NDArray[np.float64]
    scored_windows: NDArray[np.bool_]

    @property
    def n_windows(self) -> int:
        """Number of scored windows (those not wholly inside probation)."""
        return int(self.scored_windows.sum())


def layout_file(
    timestamps: ArrayLike, windows: Sequence[Window], probation_percent: float = PROBATION_PERCENT
) -> FileLayout:
    """Precompute one file's window membership and per-row detection worth (see :class:`FileLayout`).

    Parameters
    ----------
    timestamps : array_like
        Row timestamps in file order.
    windows : sequence of (start, end)
        The file's label windows.
    probation_percent : float, optional
        NAB's probationary fraction (0.15).
    """
    n = int(to_ns(timestamps).size)
    rows = window_rows(timestamps, windows)
    window_id = np.full(n, -1, dtype=np.int64)
    unit = np.empty(n, dtype=np.float64)
    idx = np.arange(n)
    for k, (left, right) in enumerate(rows):
        window_id[left : right + 1] = k
        width = float(right - left + 1)
        unit[left : right + 1] = scaled_sigmoid(-(right - idx[left : right + 1] + 1) / width) / _MAX_TP
    outside = window_id < 0
    rights = np.array([r for _, r in rows], dtype=np.int64)
    widths = np.array([r - left + 1 for left, r in rows], dtype=np.float64)
    prev = np.searchsorted(rights, idx[outside], side="left") - 1  # last window ending before the row
    position = np.full(prev.size, _FAR)
    after = prev >= 0
    span = widths[prev[after]] - 1.0
    gap = (idx[outside][after] - rights[prev[after]]).astype(np.float64)
    with np.errstate(divide="ignore"):
        position[after] = np.where(span > 0, gap / np.where(span > 0, span, 1.0), np.inf)
    unit[outside] = scaled_sigmoid(position)
    probation = probation_length(n, probation_percent)
    scored = np.array([r >= probation for _, r in rows], dtype=np.bool_)
    return FileLayout(n, probation, tuple(rows), window_id, unit, scored)


@dataclass(frozen=True, slots=True)
class FileScore:
    """Raw NAB score of one file at one threshold, with its counts."""

    raw: float
    detected_windows: int
    missed_windows: int
    false_positives: int


def score_file(layout: FileLayout, scores: ArrayLike, profile: CostProfile, threshold: float) -> FileScore:
    """Raw NAB score of one file.

    Parameters
    ----------
    layout : FileLayout
        From :func:`layout_file`.
    scores : array_like
        Per-row anomaly scores, same length as the file.
    profile : CostProfile
        Cost weights.
    threshold : float
        A row is a detection when its score is ``>= threshold``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (layout.n_rows,):
        raise ValueError(f"expected {layout.n_rows} scores, got shape {s.shape}")
    detected = s >= threshold
    detected[: layout.probation] = False
    fp_rows = detected & (layout.window_id < 0)
    raw = profile.fp_weight * float(layout.unit_value[fp_rows].sum())
    hits = misses = 0
    for k, (left, right) in enumerate(layout.windows):
        if not layout.scored_windows[k]:
            continue
        first = np.flatnonzero(detected[left : right + 1])
        if first.size:
            raw += profile.tp_weight * float(layout.unit_value[left + int(first[0])])
            hits += 1
        else:
            raw -= profile.fn_weight
            misses += 1
    return FileScore(raw, hits, misses, int(fp_rows.sum()))


def raw_file_score(
    timestamps: ArrayLike,
    scores: ArrayLike,
    windows: Sequence[Window],
    profile: CostProfile,
    threshold: float,
    probation_percent: float = PROBATION_PERCENT,
) -> float:
    """Raw NAB score of one file from its timestamps, scores and windows (see :func:`score_file`)."""
    return score_file(layout_file(timestamps, windows, probation_percent), scores, profile, threshold).raw


def normalised_score(raw: float, n_windows: int, profile: CostProfile) -> float:
    """``100 * (raw - raw_null) / (raw_perfect - raw_null)`` for a corpus of ``n_windows`` windows.

    Examples
    --------
    >>> normalised_score(-116.0, 116, STANDARD), normalised_score(116.0, 116, STANDARD)
    (0.0, 100.0)
    """
    if n_windows <= 0:
        raise ValueError("the normalised score needs at least one scored window")
    null = -profile.fn_weight * n_windows
    perfect = profile.tp_weight * n_windows
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class CorpusScore:
    """Corpus NAB score at one threshold."""

    threshold: float
    raw: float
    normalised: float
    n_windows: int
    detected_windows: int
    false_positives: int
    per_file: Mapping[str, FileScore]


def layout_corpus(
    timestamps: Mapping[str, ArrayLike],
    windows: Mapping[str, Sequence[Window]],
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, FileLayout]:
    """:func:`layout_file` for every file of ``timestamps``; every file needs an entry in ``windows``."""
    missing = sorted(set(timestamps) - set(windows))
    if missing:
        raise KeyError(f"no label windows for {missing[:3]}{'...' if len(missing) > 3 else ''}")
    return {name: layout_file(ts, windows[name], probation_percent) for name, ts in timestamps.items()}


def score_corpus(
    layouts: Mapping[str, FileLayout], scores: Mapping[str, ArrayLike], profile: CostProfile, threshold: float
) -> CorpusScore:
    """Raw and normalised NAB score of a corpus at one threshold.

    Parameters
    ----------
    layouts : mapping of str to FileLayout
        From :func:`layout_corpus`; defines the corpus.
    scores : mapping of str to array_like
        Per-row anomaly scores of every file in ``layouts``.
    profile : CostProfile
        Cost weights.
    threshold : float
        Detection threshold, shared by all files.
    """
    per_file = {name: score_file(layout, scores[name], profile, threshold) for name, layout in layouts.items()}
    raw = math.fsum(f.raw for f in per_file.values())
    n_windows = sum(layout.n_windows for layout in layouts.values())
    return CorpusScore(
        threshold=float(threshold),
        raw=raw,
        normalised=normalised_score(raw, n_windows, profile),
        n_windows=n_windows,
        detected_windows=sum(f.detected_windows for f in per_file.values()),
        false_positives=sum(f.false_positives for f in per_file.values()),
        per_file=per_file,
    )


def sweep_thresholds(
    layouts: Mapping[str, FileLayout], scores: Mapping[str, ArrayLike], profile: CostProfile
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Raw corpus score at every distinct anomaly score used as the threshold.

    The scored rows of all files are sorted once by decreasing anomaly score; lowering the threshold
    past a row adds its false-positive cost, or improves its window from ``-A_FN`` (or from a later
    detection) to the row's worth. Cumulative sums then give every threshold's raw score.

    Parameters
    ----------
    layouts, scores, profile
        As for :func:`score_corpus`.

    Returns
    -------
    thresholds : numpy.ndarray
        Decreasing: ``inf`` (no detection) and then each distinct finite score.
    raw : numpy.ndarray
        Raw corpus score at each threshold (up to float summation error).
    """
    vals, wids, score_parts = [], [], []
    offset = n_windows = 0
    for name, layout in layouts.items():
        s = np.asarray(scores[name], dtype=np.float64)
        if s.shape != (layout.n_rows,):
            raise ValueError(f"{name}: expected {layout.n_rows} scores, got shape {s.shape}")
        keep = slice(layout.probation, None)
        wid = layout.window_id[keep]
        weight = np.where(wid >= 0, profile.tp_weight, profile.fp_weight)
        vals.append(layout.unit_value[keep] * weight)
        wids.append(np.where(wid >= 0, wid + offset, -1))
        score_parts.append(s[keep])
        offset += len(layout.windows)
        n_windows += layout.n_windows
    value, gid, s_all = (np.concatenate(x) if x else np.empty(0) for x in (vals, wids, score_parts))
    keep_rows = ~np.isnan(s_all)  # NaN is never a detection
    value, gid, s_all = value[keep_rows], gid[keep_rows].astype(np.int64), s_all[keep_rows]
    order = np.argsort(-s_all, kind="stable")  # values are in corpus row order, so a smaller index = earlier row
    delta = value[order].copy()  # false positives add their (non-positive) worth
    in_window = np.flatnonzero(gid[order] >= 0)  # positions in sorted order
    if in_window.size:
        g = gid[order][in_window]
        by_group = np.argsort(g, kind="stable")  # contiguous groups, each in decreasing-score order
        g_sorted = g[by_group]
        rows = order[in_window][by_group]
        big = np.int64(value.size + 1)
        key = g_sorted * big + (big - 1 - rows)  # larger key = earlier row, never leaks across groups
        earliest = (big - 1) - (np.maximum.accumulate(key) - g_sorted * big)
        best = value[earliest]
        previous = np.empty_like(best)
        previous[1:] = best[:-1]
        starts = np.ones(g_sorted.size, dtype=bool)
        starts[1:] = g_sorted[1:] != g_sorted[:-1]
        previous[starts] = -profile.fn_weight
        delta[in_window[by_group]] = best - previous
    base = -profile.fn_weight * n_windows
    total = base + np.cumsum(delta)
    s_sorted = s_all[order]
    run_end = np.ones(s_sorted.size, dtype=bool)
    run_end[:-1] = s_sorted[1:] != s_sorted[:-1]
    thresholds = np.concatenate(([np.inf], s_sorted[run_end]))
    raw = np.concatenate(([base], total[run_end]))
    return thresholds, raw


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """Best threshold for a profile and the corpus score there (recomputed directly)."""

    threshold: float
    score: CorpusScore


def optimise_threshold(
    layouts: Mapping[str, FileLayout],
    scores: Mapping[str, ArrayLike],
    profile: CostProfile,
    tolerance: float = 1e-9,
) -> ThresholdResult:
    """Corpus-optimal threshold for a profile, like NAB's sweeper.

    Parameters
    ----------
    layouts, scores, profile
        As for :func:`score_corpus`.
    tolerance : float, optional
        Raw scores within this of the maximum count as ties; the highest such threshold wins.

    Returns
    -------
    ThresholdResult
        The threshold (an anomaly score value present in the data, or ``inf`` if never alarming is
        best) and :func:`score_corpus` at it.
    """
    thresholds, raw = sweep_thresholds(layouts, scores, profile)
    best = int(np.flatnonzero(raw >= raw.max() - tolerance)[0])
    threshold = float(thresholds[best])
    return ThresholdResult(threshold, score_corpus(layouts, scores, profile, threshold))
