"""Event F1 at equal false-alarm rates: each method's best F1 on the evaluation seeds per false-alarm budget.

The ablation's headline freezes every method's threshold on the calibration seeds and applies it to the
evaluation seeds: how well a method does with a threshold chosen in advance. Each frozen threshold then
lands on its *own* false-alarm rate on the evaluation seeds (one method at 0.00 per symbol-day, another at
0.06), so that table does not compare methods at the same false-alarm rate. This module does: for each
method, an alert replay at every candidate threshold on the pooled evaluation seeds gives a point
(false alarms per symbol-day, event F1); the frontier is the best F1 reachable at or below each
false-alarm level. The threshold is chosen on the evaluation data itself, the same oracle for every
method, so these figures rank methods; they are not what a deployment with a threshold fixed in advance
sees (the headline table is).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: False-alarm levels (per symbol-day) of the table: none, the issue's 0.1, the ablation's default cap 0.2.
LEVELS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5)
#: The plot's false-alarm axis ends here; the ablation's sweep stops once false alarms stay above it.
MAX_FALSE_ALARMS = 1.0


@dataclass(frozen=True, slots=True)
class Point:
    """One alert replay of one method at one threshold, pooled over the evaluation seeds."""

    threshold: float
    false_alarms_per_symbol_day: float
    f1: float
    recall: float


def best_at(points: Sequence[Point], level: float) -> Point | None:
    """The highest-F1 point with at most ``level`` false alarms per symbol-day (ties: fewer false alarms,
    then the higher threshold); ``None`` if no threshold gets that low."""
    within = [p for p in points if p.false_alarms_per_symbol_day <= level + 1e-9]
    if not within:
        return None
    return max(within, key=lambda p: (p.f1, -p.false_alarms_per_symbol_day, p.threshold))


_CSV_COLUMNS = ("method", "threshold", "false_alarms_per_symbol_day", "f1", "recall")


def write_csv(path: Path, frontiers: Mapping[str, Sequence[Point]]) -> None:
    """Every swept point of every method (gzipped CSV), so any other threshold can be read off later."""
    with gzip.open(path, "wt", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(_CSV_COLUMNS)
        for method, points in frontiers.items():
            out.writerows((method, repr(p.threshold), round(p.false_alarms_per_symbol_day, 6), round(p.f1, 6),
                           round(p.recall, 6)) for p in points)


def read_csv(path: Path) -> dict[str, list[Point]]:
    """The frontiers :func:`write_csv` wrote (figures rounded to 6 decimals, thresholds exact)."""
    frontiers: dict[str, list[Point]] = {}
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            frontiers.setdefault(row["method"], []).append(Point(
                float(row["threshold"]), float(row["false_alarms_per_symbol_day"]), float(row["f1"]),
                float(row["recall"])))
    return frontiers


def matched(frontiers: Mapping[str, Sequence[Point]], levels: Sequence[float] = LEVELS) -> dict[str, Any]:
    """Per method and level: the best point (JSON-ready; ``None`` where the level is out of reach)."""
    out: dict[str, Any] = {}
    for method, points in frontiers.items():
        row: dict[str, Any] = {}
        for level in levels:
            best = best_at(points, level)
            row[f"{level:g}"] = None if best is None else {
                "f1": round(best.f1, 4), "recall": round(best.recall, 4), "threshold": best.threshold,
                "false_alarms_per_symbol_day": round(best.false_alarms_per_symbol_day, 4)}
        out[method] = row
    return out


def markdown(table: Mapping[str, Mapping[str, Any]], paired: Mapping[str, Any] | None = None) -> str:
    """The README table: best event F1 per method at each false-alarm level, and where ``paired`` has it
    (``{"lead": name, "levels": {level: {method: difference}}}``), the lead's F1 minus the method's."""
    if not table:
        return ""
    levels = list(next(iter(table.values())))
    lead = (paired or {}).get("lead")
    diffs = (paired or {}).get("levels", {})
    lines = [
        "Event F1 at equal false-alarm rates on the evaluation seeds (each method's best threshold *on them*,"
        " the same oracle for every method: it ranks methods, it is not a deployment figure)"
        + (f"; in brackets {lead}'s F1 minus the method's at that level, paired 95% interval over symbols"
           " given those thresholds:" if lead else ":"),
        "",
        "| method | " + " | ".join(f"F1 at <= {lv} false alarms / symbol-day" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for method, row in table.items():
        cells = []
        for lv in levels:
            if row[lv] is None:
                cells.append("-")
                continue
            d = diffs.get(lv, {}).get(method)
            ci = "" if d is None else f" ({d['difference']:+.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}])"
            cells.append(f"{row[lv]['f1']:.3f}{ci}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frontier_plot(path: Path, frontiers: Mapping[str, Sequence[Point]], lead: str) -> None:
    """Best F1 against the false-alarm budget, one step line per method (the lead drawn thick)."""
    fig = Figure(figsize=(8, 5), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    grid = np.linspace(0.0, MAX_FALSE_ALARMS, 201)
    for method, points in frontiers.items():
        best = [best_at(points, g) for g in grid]
        f1 = np.array([np.nan if b is None else b.f1 for b in best])
        ax.step(grid, f1, where="post", lw=2.5 if method == lead else 1.0, label=method,
                ls="-" if "/" not in method else "--")
    ax.set_xlabel("false alarms per symbol-day (at most)")
    ax.set_ylabel("best event F1 (threshold chosen on the evaluation seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("event F1 at equal false-alarm rates")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
