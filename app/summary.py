"""Read models of a symbol for the web views, the shared cache and the dashboard.

Derived from the state the pipeline keeps (``SymbolSnapshot``), never fed back into it:
the summary (price, score, alert state, indicators, Bollinger bands, member scores) and
the chart points (one per 10-second event-time bar). Everything is JSON-ready: non-finite
numbers become ``None`` so that browsers and ``json.loads`` accept it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from models.ensemble import severity_of
from models.pipeline import SymbolSnapshot, bar_points
from models.ticks import Tick

#: A chart point: [bar start ms, close, highest score in the bar, band mid, band lower, band upper].
Point = list[float | None]


def num(x: float | None, digits: int = 8) -> float | None:
    """``x`` rounded, or None when missing or not finite."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def bands_of(snap: SymbolSnapshot) -> dict[str, float | None] | None:
    """Bollinger bands (SMA20 of the 10 s bar closes +- 2 std), None before 20 bars exist."""
    mean, std = snap.features.bands.mean(), snap.features.bands.std()
    if mean is None or std is None:
        return None
    return {"mid": num(mean), "lower": num(mean - 2.0 * std), "upper": num(mean + 2.0 * std)}


def indicators_of(snap: SymbolSnapshot) -> dict[str, float | None]:
    """The bar indicators as of the symbol's latest tick (same formulas as the alert's ``indicators``).

    Read from the feature engine's public estimators, so asking costs nothing and changes nothing.
    """
    eng, price = snap.features, snap.last_price
    mean, std = eng.bands.mean(), eng.bands.std()
    macd = eng.macd.get()
    vol = eng.returns.std()
    mom = eng.lag_momentum.get()
    lag = eng.lag_1m.get()
    ok = math.isfinite(price) and price > 0
    return {
        "rsi": num(eng.rsi.get(), 4),
        "macd": num(100.0 * macd[0] / price, 6) if macd is not None and ok else None,
        "macd_hist": num(100.0 * macd[2] / price, 6) if macd is not None and ok else None,
        "bollinger_position": (
            None if mean is None or std is None or not ok else num((price - mean) / (2.0 * std) if std > 0 else 0.0, 6)
        ),
        "moving_avg_ratio": num(price / mean, 8) if mean and ok else None,
        "volatility": num(100.0 * vol, 6) if vol is not None else None,
        "momentum": num(100.0 * (price / mom - 1.0), 6) if mom and ok else None,
        "price_change_pct": num(100.0 * (price / lag - 1.0), 6) if lag and ok else None,
    }


def summary_of(
    snap: SymbolSnapshot, *, members: dict[str, float] | None, threshold: float, cooldown_s: float,
    model_version: str, owner: str,
) -> dict[str, Any]:
    """One symbol as the views show it. ``alert_state`` is ``active`` while the symbol is inside the
    cooldown (event time) of its last alert, i.e. the alert episode is still running."""
    active = (
        snap.last_alert_ms is not None and snap.last_event_ms is not None
        and snap.last_event_ms - snap.last_alert_ms < cooldown_s * 1000.0
    )
    score = num(snap.last_score, 6) or 0.0
    return {
        "symbol": snap.symbol,
        "ticks": snap.ticks,
        "last_price": num(snap.last_price, 10),
        "last_event_ms": snap.last_event_ms,
        "score": score,
        "severity": severity_of(score, threshold),
        "alert_state": "active" if active else "quiet",
        "last_alert_ms": snap.last_alert_ms,
        "last_alert_id": snap.last_alert_id,
        "alerts": snap.alerts,
        "threshold": threshold,
        "symbol_threshold": _symbol_threshold(snap, threshold),
        "model_version": model_version,
        "indicators": indicators_of(snap),
        "bands": bands_of(snap),
        "members": {k: num(v, 6) for k, v in (members or {}).items()},
        "owner": owner,
    }


def _symbol_threshold(snap: SymbolSnapshot, threshold: float) -> float | None:
    """The symbol's own (adaptive) threshold when the pipeline keeps one, else None."""
    adaptive = getattr(snap, "adaptive", None)
    return num(adaptive.threshold(threshold), 6) if adaptive is not None else None


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The list view's subset of a summary."""
    keys = ("symbol", "ticks", "last_price", "last_event_ms", "score", "severity", "alert_state", "last_alert_ms",
            "alerts", "owner")
    return {k: summary.get(k) for k in keys}


class History:
    """Chart points per symbol, one per event-time bar, the newest ``maxlen`` kept.

    Price and score come from every tick; the bands exist only at batch ends (the pipeline
    does not return per-tick features), so during a fast replay only the last point of each
    batch carries them. Live, batches are shorter than a bar and every point has its bands.
    """

    def __init__(self, maxlen: int, bar_ms: int = 10_000, max_symbols: int = 10_000) -> None:
        self.maxlen = maxlen
        self.bar_ms = bar_ms
        self.max_symbols = max_symbols
        self.points: dict[str, deque[Point]] = {}

    def fold(self, ticks: Sequence[Tick], scores: Sequence[float | None],
             bands: dict[str, dict[str, float | None] | None]) -> dict[str, tuple[bool, list[Point]]]:
        """Fold a batch in; per touched symbol: (its previous last point was updated, the changed points)."""
        appended: dict[str, int] = {}
        updated_old: dict[str, bool] = {}
        if len(ticks) != len(scores):
            raise ValueError(f"{len(ticks)} ticks, {len(scores)} scores")
        # The compiled core folds the ticks into points per symbol (redelivered ticks, score None, are
        # already drawn); each point then joins the history as a tick did: into the last point if that
        # one's bar is not earlier, else appended.
        for sym, batch_points in bar_points(ticks, scores, self.bar_ms).items():
            dq = self.points.get(sym)
            if dq is None:
                if len(self.points) >= self.max_symbols:
                    del self.points[next(iter(self.points))]
                dq = self.points[sym] = deque(maxlen=self.maxlen)
            for bar, price, score in batch_points:
                last = dq[-1] if dq else None
                if last is not None and last[0] is not None and last[0] >= bar:
                    last[1] = price
                    last[2] = max(last[2] or 0.0, score)
                    if appended.get(sym, 0) == 0:
                        updated_old[sym] = True
                else:
                    dq.append([bar, price, score, None, None, None])
                    appended[sym] = appended.get(sym, 0) + 1
        changed: dict[str, tuple[bool, list[Point]]] = {}
        for sym in set(appended) | set(updated_old):
            dq = self.points[sym]
            b = bands.get(sym)
            if b is not None:
                dq[-1][3:6] = [b["mid"], b["lower"], b["upper"]]
            n = min(len(dq), appended.get(sym, 0) + (1 if updated_old.get(sym) else 0))
            changed[sym] = (bool(updated_old.get(sym)), [list(p) for p in list(dq)[-n:]])
        return changed

    def get(self, symbol: str) -> list[Point]:
        return [list(p) for p in self.points.get(symbol, ())]
