"""PNG plots of a backtest: one per labelled event, and the threshold curve.

Built on matplotlib's object API (``Figure`` + Agg canvas, never ``pyplot``): no global
figure registry to leak memory over dozens of plots, no GUI backend to pick, and safe to
call from any thread. Inputs are plain numpy arrays so the plots never see Tick objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.evaluation import Event

_MIN = 60_000.0
MAX_POINTS = 20_000  # per line; a liquid symbol can have 100k ticks in an event window
_CLIP = 1e-6  # scores are rounded to 6 decimals: 0 and 1 would be off a logit axis


@dataclass(frozen=True, slots=True)
class SymbolSeries:
    """One symbol's ticks (time order) with the pipeline's score and its alerts."""

    times: npt.NDArray[np.int64]
    prices: npt.NDArray[np.float64]
    scores: npt.NDArray[np.float64]
    alert_times: npt.NDArray[np.int64]
    alert_prices: npt.NDArray[np.float64]


def _thin(n: int) -> slice:
    """Every k-th point so a line has at most MAX_POINTS (the shape survives; the file stays small)."""
    return slice(None, None, max(1, math.ceil(n / MAX_POINTS)))


def _bucket_max(x: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    """Max of each run of k values (aligned with ``[::k]``): thinning must not hide a score peak."""
    if k <= 1:
        return x
    pad = -x.size % k
    return np.asarray(np.concatenate([x, np.full(pad, -np.inf)]).reshape(-1, k).max(axis=1))


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def event_plot(
    path: Path,
    series: SymbolSeries,
    event: Event,
    threshold: float,
    delay_s: float | None,
    context_ms: int,
) -> None:
    """Price (top) and ensemble score (bottom) around ``event``; the window shaded, alerts marked.

    The x axis is minutes from the window start, so plots of different events compare directly.
    """
    lo, hi = event.start_ms - context_ms, event.end_ms + context_ms
    a, b = np.searchsorted(series.times, [lo, hi + 1])
    t = (series.times[a:b] - event.start_ms) / _MIN
    price, score = series.prices[a:b], series.scores[a:b]
    m = (series.alert_times >= lo) & (series.alert_times <= hi)
    at = (series.alert_times[m] - event.start_ms) / _MIN
    ap = series.alert_prices[m]

    fig = Figure(figsize=(11, 6.5), dpi=90)
    FigureCanvasAgg(fig)
    ax_p, ax_s = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    win = (0.0, (event.end_ms - event.start_ms) / _MIN)
    step = _thin(t.size)
    score = _bucket_max(score, step.step or 1)
    for ax in (ax_p, ax_s):
        ax.axvspan(*win, color="tab:orange", alpha=0.15, label="labelled window")
        for x in at:
            ax.axvline(x, color="tab:red", lw=0.8, alpha=0.6)
    ax_p.plot(t[step], price[step], lw=0.8, color="tab:blue", label="trade price")
    if at.size:
        ax_p.scatter(at, ap, marker="v", color="tab:red", zorder=3, label=f"alerts ({at.size})")
    ax_p.set_ylabel("price")
    ax_p.legend(loc="upper left", fontsize=8)
    if 0.1 <= threshold <= 0.9:
        ax_s.plot(t[step], score, lw=0.7, color="tab:purple", label="ensemble score")
        ax_s.set_ylim(-0.02, 1.02)
        ax_s.set_ylabel("score")
    else:  # a calibrated threshold near 0 or 1 is invisible on a linear axis
        ax_s.plot(t[step], np.clip(score, _CLIP, 1 - _CLIP), lw=0.7, color="tab:purple", label="ensemble score")
        ax_s.set_yscale("logit")
        ax_s.set_ylabel("score (logit scale)")
    ax_s.axhline(threshold, color="black", ls="--", lw=0.8, label=f"threshold {threshold:.4g}")
    ax_s.set_xlabel("minutes from window start")
    ax_s.legend(loc="upper left", fontsize=8)
    outcome = "missed" if delay_s is None else f"detected after {delay_s:.0f} s"
    scen = f" {event.scenario}" if event.scenario else ""
    fig.suptitle(f"{event.symbol}{scen} at {_utc(event.start_ms)}: {outcome}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)


def curve_plot(path: Path, curve: Sequence[dict[str, Any]], operating: dict[str, Any]) -> None:
    """Precision/recall curve (left) and the metrics against the threshold (right).

    Every point is an alert replay at that threshold with the cooldown and episode rules, so
    the curve describes alarms (episodes), not ticks.
    """
    thr = np.array([c["threshold"] for c in curve])
    rec = np.array([c["recall"] for c in curve])
    prec = np.array([c["precision"] for c in curve])
    f1 = np.array([c["f1"] for c in curve])
    fa = np.array([c["false_alarms_per_symbol_day"] for c in curve])

    fig = Figure(figsize=(12, 5), dpi=90)
    FigureCanvasAgg(fig)
    ax_pr, ax_t = fig.subplots(1, 2)
    ax_pr.plot(rec, prec, marker=".", lw=1.0, color="tab:blue")
    ax_pr.scatter([operating["recall"]], [operating["precision"]], color="tab:red", zorder=3,
                  label=f"operating point (threshold {operating['threshold']:.4g})")
    ax_pr.set_xlim(-0.02, 1.02)
    ax_pr.set_ylim(-0.02, 1.02)
    ax_pr.set_xlabel("recall (events)")
    ax_pr.set_ylabel("precision (alarm episodes)")
    ax_pr.set_title("precision / recall over thresholds")
    ax_pr.legend(loc="lower left", fontsize=8)

    ax_t.plot(thr, rec, label="recall", color="tab:green")
    ax_t.plot(thr, prec, label="precision", color="tab:blue")
    ax_t.plot(thr, f1, label="F1", color="black")
    ax_t.axvline(operating["threshold"], color="tab:red", ls="--", lw=0.8)
    ax_t.set_xscale("logit")  # the grid is dense near 0 and 1, where calibrated thresholds live
    ax_t.set_xlabel("alert threshold (logit scale)")
    ax_t.set_ylim(-0.02, 1.02)
    ax_fa = ax_t.twinx()
    ax_fa.plot(thr, fa, color="tab:orange", ls=":", label="false alarms / symbol-day")
    ax_fa.set_ylabel("false alarms per symbol-day")
    if np.any(fa > 0):
        ax_fa.set_yscale("symlog", linthresh=0.1)
    lines = ax_t.get_lines()[:3] + ax_fa.get_lines()
    ax_t.legend(lines, [str(ln.get_label()) for ln in lines], loc="best", fontsize=8)
    ax_t.set_title("metrics against the threshold")
    fig.tight_layout()
    fig.savefig(path)
