"""Event-level detection metrics (the protocol of the evaluation notes).

* An alarm is an *episode*: alerts of one symbol closer together than ``episode_gap_s``
  (default 30 min) form one episode, timed at its first alert.
* An event (label window) is detected when an episode starts inside it.
* Precision = episodes starting inside some window / all episodes.
* False alarms per symbol-day = episodes outside every window / observed symbol-days
  (per symbol, the span from its first to its last tick).
* Delay = first in-window episode start minus window start.

Never point-adjusted: a window is credited only for an episode that *starts* inside it.

:func:`pick_threshold` is the threshold rule that training and the ablation apply to these figures.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Event:
    symbol: str
    start_ms: int
    end_ms: int
    scenario: str = ""


def cooldown_alert_times(hits: np.ndarray, cooldown_ms: float) -> list[int]:
    """The alert times among one symbol's sorted hit times (ticks at or above the threshold): the
    first hit alerts, and the next alert is the first hit at least ``cooldown_ms`` later (the
    worker's event-time cooldown). Jumps from alert to alert by binary search."""
    if cooldown_ms <= 0:
        return [int(t) for t in hits]
    out: list[int] = []
    i = 0
    while i < hits.size:
        t = int(hits[i])
        out.append(t)
        i = int(np.searchsorted(hits, t + cooldown_ms, side="left"))
    return out

def episodes(alerts: Iterable[tuple[str, int]], episode_gap_s: float = 1800.0) -> dict[str, list[int]]:
    """Episode start times per symbol from (symbol, event_time_ms) alerts."""
    by_symbol: dict[str, list[int]] = {}
    for symbol, t in alerts:
        by_symbol.setdefault(symbol, []).append(t)
    gap = episode_gap_s * 1000.0
    out: dict[str, list[int]] = {}
    for symbol, times in by_symbol.items():
        times.sort()
        starts = [times[0]]
        for prev, cur in zip(times, times[1:], strict=False):
            if cur - prev >= gap:
                starts.append(cur)
        out[symbol] = starts
    return out


@dataclass(frozen=True, slots=True)
class EventReport:
    events: int
    detected: int
    recall: float
    episodes: int
    true_episodes: int
    precision: float
    f1: float
    false_alarms: int
    symbol_days: float
    false_alarms_per_symbol_day: float
    delay_median_s: float | None
    delay_p90_s: float | None
    per_event: tuple[tuple[Event, float | None], ...]  # (event, delay s or None if missed)

    def summary(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in (
            "events", "detected", "recall", "episodes", "precision", "f1", "false_alarms",
            "symbol_days", "false_alarms_per_symbol_day", "delay_median_s", "delay_p90_s")}


def evaluate(
    alerts: Iterable[tuple[str, int]],
    events: Sequence[Event],
    spans: Mapping[str, tuple[int, int]],
    episode_gap_s: float = 1800.0,
) -> EventReport:
    """Score alerts against labelled events; ``spans`` gives each symbol's first/last tick time."""
    eps = episodes(alerts, episode_gap_s)
    windows: dict[str, list[Event]] = {}
    for ev in sorted(events, key=lambda e: e.start_ms):
        windows.setdefault(ev.symbol, []).append(ev)

    per_event: list[tuple[Event, float | None]] = []
    true_eps = 0
    n_eps = 0
    for symbol, starts in eps.items():
        n_eps += len(starts)
        for t in starts:
            if any(w.start_ms <= t <= w.end_ms for w in windows.get(symbol, ())):
                true_eps += 1
    for ev in events:
        starts = eps.get(ev.symbol, [])
        i = bisect.bisect_left(starts, ev.start_ms)
        hit = starts[i] if i < len(starts) and starts[i] <= ev.end_ms else None
        per_event.append((ev, None if hit is None else (hit - ev.start_ms) / 1000.0))

    detected = sum(1 for _, d in per_event if d is not None)
    recall = detected / len(events) if events else 0.0
    precision = true_eps / n_eps if n_eps else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    symbol_days = sum(max(0, last - first) for first, last in spans.values()) / _DAY_MS
    false_alarms = n_eps - true_eps
    delays = [d for _, d in per_event if d is not None]
    return EventReport(
        events=len(events), detected=detected, recall=round(recall, 4), episodes=n_eps, true_episodes=true_eps,
        precision=round(precision, 4), f1=round(f1, 4), false_alarms=false_alarms,
        symbol_days=round(symbol_days, 3),
        false_alarms_per_symbol_day=round(false_alarms / symbol_days, 4) if symbol_days > 0 else 0.0,
        delay_median_s=round(float(np.median(delays)), 2) if delays else None,
        delay_p90_s=round(float(np.percentile(delays, 90)), 2) if delays else None,
        per_event=tuple(per_event),
    )


def false_alarm_contexts(
    alerts: Iterable[tuple[str, int]],
    events: Sequence[Event],
    not_events: frozenset[str] = frozenset(),
    after_s: float = 3600.0,
    episode_gap_s: float = 1800.0,
) -> dict[str, int]:
    """Where the false-alarm episodes start: what a reader needs to see before trusting a rate.

    ``events`` are all labelled windows, including those of ``not_events`` scenarios (a regime
    shift: an alarm starting there is a false alarm, counted as ``in_<scenario>``). An episode
    starting within ``after_s`` after the end of an event window counts as ``after_<scenario>``
    (the dump after a pump, the recovery after a crash); any other as ``elsewhere``. Episodes
    starting inside an event window are true alarms and are not counted.
    """
    by_symbol: dict[str, list[Event]] = {}
    for ev in events:
        by_symbol.setdefault(ev.symbol, []).append(ev)
    after_ms = after_s * 1000.0
    out: dict[str, int] = {}
    for symbol, starts in episodes(alerts, episode_gap_s).items():
        windows = by_symbol.get(symbol, [])
        for t in starts:
            inside = [ev for ev in windows if ev.start_ms <= t <= ev.end_ms]
            if any(ev.scenario not in not_events for ev in inside):
                continue  # a true alarm
            if inside:
                where = f"in_{inside[0].scenario}"
            else:
                before = [ev for ev in windows
                          if ev.end_ms < t <= ev.end_ms + after_ms and ev.scenario not in not_events]
                where = f"after_{max(before, key=lambda ev: ev.end_ms).scenario}" if before else "elsewhere"
            out[where] = out.get(where, 0) + 1
    return dict(sorted(out.items()))


def symbol_counts(report: EventReport, alerts: Iterable[tuple[str, int]], symbols: Sequence[str],
                  episode_gap_s: float = 1800.0) -> np.ndarray:
    """Per symbol (rows in ``symbols`` order): events, detected events, alarm episodes, true episodes.

    ``report`` is :func:`evaluate` of the same alerts; its per-event outcomes give the first two columns.
    """
    row = {s: i for i, s in enumerate(symbols)}
    out = np.zeros((len(symbols), 4), dtype=np.int64)
    windows: dict[str, list[Event]] = {}
    for ev, delay in report.per_event:
        out[row[ev.symbol], 0] += 1
        out[row[ev.symbol], 1] += delay is not None
        windows.setdefault(ev.symbol, []).append(ev)
    for symbol, starts in episodes(alerts, episode_gap_s).items():
        for t in starts:
            out[row[symbol], 2] += 1
            out[row[symbol], 3] += any(w.start_ms <= t <= w.end_ms for w in windows.get(symbol, ()))
    return out


def _f1_of_counts(c: np.ndarray) -> np.ndarray:
    """Event F1 of summed counts (..., 4) as :func:`symbol_counts` gives them."""
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(c[..., 0] > 0, c[..., 1] / c[..., 0], 0.0)
        precision = np.where(c[..., 2] > 0, c[..., 3] / c[..., 2], 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return np.asarray(f1)


def paired_f1_difference(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0
                         ) -> dict[str, float | list[float]]:
    """F1 of method A minus F1 of method B, with a paired cluster-bootstrap interval.

    ``a`` and ``b`` are :func:`symbol_counts` of the two methods on the same symbols. Each replicate
    draws symbols with replacement and scores *both* methods on the same draw, so the interval is
    that of the difference, much narrower than two separate intervals when the methods agree on
    most events. ``share_not_above``: the share of replicates in which A's F1 is not above B's.
    """
    if a.shape != b.shape:
        raise ValueError(f"counts of different symbol sets: {a.shape} vs {b.shape}")
    if len(a) == 0:
        raise ValueError("no symbols to resample")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(a), size=(resamples, len(a)))
    diff = _f1_of_counts(a[draws].sum(axis=1)) - _f1_of_counts(b[draws].sum(axis=1))
    lo, hi = np.percentile(diff, [2.5, 97.5])
    observed = float(_f1_of_counts(a.sum(axis=0)) - _f1_of_counts(b.sum(axis=0)))
    return {"difference": round(observed, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "share_not_above": round(float((diff <= 0).mean()), 4)}


def poisson_upper(count: int, confidence: float) -> float:
    """One-sided upper confidence bound of a Poisson mean after observing ``count`` events
    (the exact, Garwood bound: the mean whose probability of ``count`` or fewer is ``1 - confidence``).

    Examples
    --------
    >>> round(poisson_upper(0, 0.95), 3)  # the "rule of three"
    2.996
    >>> round(poisson_upper(4, 0.5), 2)  # about the count plus two thirds
    4.67
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    # Imported here: the worker imports this module and must not load SciPy (~100 MB with scikit-learn).
    from scipy.special import gammaincinv

    return float(gammaincinv(count + 1, confidence))


def pick_threshold(points: Sequence[tuple[float, float, float]], budget: float) -> int:
    """Which of ``points`` to alert at: each is (threshold, F1, false alarms per symbol-day), highest threshold first.

    Within the budget: the middle of the best-F1 plateau, i.e. of the thresholds that reach the
    best F1 there (of an even count, the higher of the two middles). The candidates are evenly spaced in
    log-odds, so this is the plateau's centre on that scale: as far as the data allow from the end where
    one more event is missed and from the end where false alarms break the budget or cost F1. The rule before
    (the plateau's top) sat at an edge: on evaluation seeds 1602-1609 and 1802-1809 the best threshold at
    the false-alarm target lay 1.2-1.4 log-odds below the one it chose (docs/detection-history.md). When no
    threshold keeps to the budget: the one with the fewest false alarms, then the higher threshold.
    """
    if not points:
        raise ValueError("no usable threshold: no candidates")
    within = [i for i, (_, _, fa) in enumerate(points) if fa <= budget + 1e-9]
    if not within:
        return min(range(len(points)), key=lambda i: (points[i][2], -points[i][0]))
    best = max(points[i][1] for i in within)
    plateau = [i for i in within if points[i][1] == best]
    return plateau[(len(plateau) - 1) // 2]


R = TypeVar("R")


def sweep_and_pick(candidates: Iterable[float], figures: Callable[[float], tuple[float, float, R]], budget: float,
                   patience: int) -> tuple[float, R]:
    """The threshold :func:`pick_threshold` takes, and its report, over ``figures(threshold)`` = (F1, false alarms
    per symbol-day, report). Candidates are tried from the highest down; the sweep stops once ``patience`` of
    them in a row are over the budget (false alarms only grow as the threshold falls, up to episodes merging).
    """
    points: list[tuple[float, float, float]] = []
    reports: list[R] = []
    over = 0
    for thr in sorted(candidates, reverse=True):
        f1, fa, report = figures(float(thr))
        points.append((float(thr), f1, fa))
        reports.append(report)
        over = 0 if fa <= budget + 1e-9 else over + 1
        if over >= patience:
            break
    i = pick_threshold(points, budget)
    return points[i][0], reports[i]


def activity_multiple(times: np.ndarray, start_ms: int, end_ms: int, before_ms: int = 3_600_000) -> float | None:
    """Trades per second inside ``[start_ms, end_ms]`` over those of the ``before_ms`` before it.

    ``times``: one symbol's trade times, sorted. What a volume-based manipulation looks like next to its
    symbol's usual activity (a miss at a multiple of 6 says something else than one at 50). None when
    the window is empty or nothing traded before it.

    Examples
    --------
    >>> activity_multiple(np.array([0, 1_000, 2_000, 3_000, 3_500, 3_600]), 3_000, 4_000, before_ms=3_000)
    3.0
    """
    a, b = (int(i) for i in np.searchsorted(times, [start_ms - before_ms, start_ms], side="left"))
    inside = int(np.searchsorted(times, end_ms, side="right") - b)
    span_s = (end_ms - start_ms) / 1000.0
    if b <= a or span_s <= 0:
        return None
    return float((inside / span_s) / ((b - a) / (before_ms / 1000.0)))
