"""Alert records: deterministic ids, explanations, per-symbol cooldown.

The alert id is a hash of what raised it (symbol, event time, model version), so a tick
processed twice (after a crash, in a replay) gives the same id and consumers can
de-duplicate on it. The cooldown is event time, so live and replay agree.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from models._fastinit import field_values
from models.detectors.statistical import MONITORED, StatResult
from models.ensemble import Verdict
from models.features import Features

ALERT_SCHEMA_VERSION = 1


def alert_id(symbol: str, event_time: int, model_version: str) -> str:
    """Stable id of the alert raised for ``symbol`` at ``event_time`` by ``model_version``.

    Examples
    --------
    >>> alert_id("BTCUSDT", 1700000000000, "stat-only")
    '...'
    >>> alert_id("BTCUSDT", 1700000000000, "stat-only") == alert_id("BTCUSDT", 1700000000000, "stat-only")
    True
    """
    return hashlib.sha256(f"{symbol}|{event_time}|{model_version}".encode()).hexdigest()[:32]


def top_features(features: Features, stat: StatResult, k: int = 5) -> list[dict[str, Any]]:
    """The k monitored features furthest from the symbol's baseline, with value and z."""
    ranked = sorted(range(len(MONITORED)), key=lambda i: -abs(stat.z[i]))[:k]
    out = []
    for i in ranked:
        name = MONITORED[i][0]
        value = getattr(features, name)
        out.append({
            "feature": name,
            "value": None if math.isnan(value) else round(value, 6),
            "z": round(stat.z[i], 3),
        })
    return out


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert; :meth:`to_dict` is the wire form (documented in the README)."""

    alert_id: str
    symbol: str
    event_time: int
    price: float
    score: float
    severity: str
    confidence: float
    threshold: float
    rule: str
    detectors: dict[str, dict[str, Any]]
    top_features: list[dict[str, Any]]
    indicators: dict[str, float | None]
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": ALERT_SCHEMA_VERSION,
            "alert_id": self.alert_id,
            "symbol": self.symbol,
            "event_time": self.event_time,
            "price": self.price,
            "score": self.score,
            "severity": self.severity,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "rule": self.rule,
            "detectors": self.detectors,
            "top_features": self.top_features,
            "indicators": self.indicators,
            "model_version": self.model_version,
        }

    def __reduce__(self) -> tuple[type[Alert], tuple[Any, ...]]:
        return Alert, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


_INDICATORS = ("rsi", "macd", "bollinger_position", "moving_avg_ratio", "volatility", "price_change_pct")


def build_alert(
    features: Features, stat: StatResult, verdict: Verdict, threshold: float, model_version: str
) -> Alert:
    votes = verdict.votes()
    return Alert(
        alert_id=alert_id(features.symbol, features.timestamp, model_version),
        symbol=features.symbol,
        event_time=features.timestamp,
        price=features.price,
        score=verdict.score,
        severity=verdict.severity,
        confidence=verdict.confidence,
        threshold=threshold,
        rule=stat.rule,
        detectors={name: {"score": p, "vote": votes[name]} for name, p in verdict.members.items()},
        top_features=top_features(features, stat),
        indicators={
            name: None if math.isnan(v := getattr(features, name)) else round(v, 6) for name in _INDICATORS
        },
        model_version=model_version,
    )
