"""The pure processing step shared by the live worker, the backtest and the tests.

``Pipeline.process(snapshots, ticks)`` folds a micro-batch of ticks into the per-symbol
snapshots and returns the alerts. It is deterministic and independent of how the ticks
are cut into batches: features and the statistical layer run tick by tick, the forests
score the whole batch in one call, then alert decisions run tick by tick again (the
cooldown depends on the previous alert). Protection of the baselines uses the statistical
layer's own score, which is known before the batch call; that is what makes the result
independent of the batch boundaries.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.alerts import Alert, build_alert
from models.detectors.statistical import StatisticalConfig, StatisticalDetector, StatResult
from models.ensemble import ModelBundle, verdicts
from models.features import FeatureConfig, FeatureEngine, Features
from models.thresholds import AdaptiveConfig, AdaptiveThreshold, adaptive_state

#: 2 added the per-symbol adaptive threshold ("thr"); a version-1 snapshot loads with a fresh one.
SNAPSHOT_SCHEMA_VERSION = 2
_READABLE_SCHEMA_VERSIONS = (1, 2)
STAT_ONLY_VERSION = "stat-only"
RECENT_TRADE_IDS = 32


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Detection settings that change results (so they belong to the pipeline, not to the app)."""

    alert_threshold: float = 0.5
    cooldown_s: float = 300.0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    statistical: StatisticalConfig = field(default_factory=StatisticalConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    #: A tick more than this behind its symbol's latest event time is rejected (``out_of_order``);
    #: within it, it is folded in at the latest time (feeds merging connections jitter by a few ms).
    max_lateness_ms: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 <= self.alert_threshold <= 1.0:
            raise ValueError(f"alert_threshold must be in [0, 1], got {self.alert_threshold}")
        if self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")


@dataclass(slots=True)
class SymbolSnapshot:
    """Everything known about one symbol: the value of the state table (JSON via to_state)."""

    symbol: str
    features: FeatureEngine
    stat: StatisticalDetector
    ticks: int = 0
    last_score: float = 0.0
    last_price: float = math.nan
    last_event_ms: int | None = None
    last_alert_ms: int | None = None
    last_alert_id: str | None = None
    alerts: int = 0
    # Highest Kafka offset applied per "topic/partition": a redelivered tick is skipped, so
    # state and alerts are not applied twice after a crash between table write and commit.
    offsets: dict[str, int] = field(default_factory=dict)
    adaptive: AdaptiveThreshold = field(default_factory=AdaptiveThreshold)  # this symbol's alert threshold
    # The last RECENT_TRADE_IDS exchange trade ids applied (and their exchange): one seen again is a
    # duplicate. A set of recent ids, not "at or below the last", so a reordered feed is not refused.
    trade_ids: list[int] = field(default_factory=list)
    trade_exchange: str | None = None

    @classmethod
    def new(cls, symbol: str, config: PipelineConfig) -> SymbolSnapshot:
        return cls(symbol, FeatureEngine(symbol, config.features), StatisticalDetector(config.statistical),
                   adaptive=AdaptiveThreshold(config.adaptive))

    def to_state(self) -> dict[str, Any]:
        return {
            "schema_version": SNAPSHOT_SCHEMA_VERSION,
            "symbol": self.symbol,
            "ticks": self.ticks,
            "last_score": self.last_score,
            "last_price": None if math.isnan(self.last_price) else self.last_price,
            "last_event_ms": self.last_event_ms,
            "last_alert_ms": self.last_alert_ms,
            "last_alert_id": self.last_alert_id,
            "alerts": self.alerts,
            "offsets": self.offsets,
            "features": self.features.to_state(),
            "stat": self.stat.to_state(),
            "thr": self.adaptive.to_state(),
            "trade_ids": self.trade_ids,
            "trade_exchange": self.trade_exchange,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: PipelineConfig) -> SymbolSnapshot:
        if state.get("schema_version") not in _READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"unsupported snapshot schema_version {state.get('schema_version')!r}")
        symbol = state["symbol"]
        return cls(
            symbol=symbol,
            features=FeatureEngine.from_state(symbol, state["features"]),
            stat=StatisticalDetector.from_state(state["stat"], config.statistical),
            ticks=state["ticks"],
            last_score=state["last_score"],
            last_price=math.nan if state["last_price"] is None else state["last_price"],
            last_event_ms=state["last_event_ms"],
            last_alert_ms=state["last_alert_ms"],
            last_alert_id=state["last_alert_id"],
            alerts=state["alerts"],
            offsets=dict(state["offsets"]),
            adaptive=AdaptiveThreshold.from_state(adaptive_state(state), config.adaptive),
            trade_ids=list(state.get("trade_ids", [])),
            trade_exchange=state.get("trade_exchange"),
        )


@dataclass(frozen=True, slots=True)
class Position:
    """Where a tick came from in Kafka (absent in file backtests)."""

    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(slots=True)
class BatchResult:
    alerts: list[Alert]
    scores: list[float | None]  # per input tick, None when skipped as already applied
    touched: set[str]  # symbols whose snapshot changed
    skipped: int = 0
    # With a model: the forests' input row of each scored tick and that tick's index in the input
    # (for periodic retraining, models.retraining); empty without a model.
    model_rows: list[list[float]] = field(default_factory=list)
    model_row_ticks: list[int] = field(default_factory=list)
    # Ticks refused by their symbol's state: (index in the input, reason, detail). Reasons:
    # ``out_of_order`` (older than the symbol's latest event by more than max_lateness_ms) and
    # ``duplicate`` (an exchange trade id among the symbol's last 32 applied). Their score is None.
    rejected: list[tuple[int, str, str]] = field(default_factory=list)


class Pipeline:
    """Ticks -> state -> scores -> alerts, for one micro-batch at a time."""

    def __init__(self, config: PipelineConfig | None = None, bundle: ModelBundle | None = None) -> None:
        self.config = config or PipelineConfig()
        self.bundle = bundle

    @property
    def model_version(self) -> str:
        return self.bundle.version if self.bundle is not None else STAT_ONLY_VERSION

    def snapshot_for(self, snapshots: MutableMapping[str, SymbolSnapshot], symbol: str) -> SymbolSnapshot:
        snap = snapshots.get(symbol)
        if snap is None:
            snap = SymbolSnapshot.new(symbol, self.config)
            snapshots[symbol] = snap
        return snap

    def process(
        self,
        snapshots: MutableMapping[str, SymbolSnapshot],
        ticks: Sequence[Any],
        positions: Sequence[Position] | None = None,
    ) -> BatchResult:
        """Fold ``ticks`` (in arrival order) into ``snapshots``; return alerts and scores."""
        staged: list[tuple[int, SymbolSnapshot, Features, StatResult]] = []
        touched: set[str] = set()
        skipped = 0
        rejected: list[tuple[int, str, str]] = []
        for i, tick in enumerate(ticks):
            snap = self.snapshot_for(snapshots, tick.symbol)
            if positions is not None:
                pos = positions[i]
                if snap.offsets.get(pos.key, -1) >= pos.offset:
                    skipped += 1
                    continue
                snap.offsets[pos.key] = pos.offset
            refused = self._refuse(snap, tick)
            if refused is not None:
                rejected.append((i, *refused))
                if positions is not None:
                    touched.add(tick.symbol)  # its recorded offset: a redelivery is skipped, not re-rejected
                continue
            if tick.trade_id is not None:
                if tick.exchange != snap.trade_exchange:
                    snap.trade_ids, snap.trade_exchange = [], tick.exchange
                snap.trade_ids.append(tick.trade_id)
                del snap.trade_ids[:-RECENT_TRADE_IDS]
            feats = snap.features.update(tick)
            stat = snap.stat.score_one_raw(feats)
            snap.stat.learn_one(feats, stat)
            snap.ticks += 1
            snap.last_price = tick.price
            # The symbol's latest event time: monotonic, so the lateness bound cannot drift backwards.
            snap.last_event_ms = feats.timestamp if snap.last_event_ms is None else max(snap.last_event_ms,
                                                                                       feats.timestamp)
            staged.append((i, snap, feats, stat))
            touched.add(tick.symbol)

        rows = [stat.model_input(feats) for _, _, feats, stat in staged] if self.bundle is not None else []
        results = verdicts([s.score for *_, s in staged], rows, self.bundle, self.config.alert_threshold)

        scores: list[float | None] = [None] * len(ticks)
        alerts: list[Alert] = []
        cooldown_ms = self.config.cooldown_s * 1000.0
        threshold = self.config.alert_threshold
        for (i, snap, feats, stat), verdict in zip(staged, results, strict=True):
            if not stat.active:
                scores[i] = snap.last_score = 0.0
                continue
            # The symbol's own threshold: the score is shifted so that comparing it with the global
            # threshold applies it (see models.thresholds); it is then updated with this tick,
            # unless this tick is flagged. Sequential per tick: independent of the batch boundaries.
            score = snap.adaptive.adjusted(verdict.score, threshold)
            symbol_threshold = snap.adaptive.threshold(threshold)
            snap.adaptive.learn(feats.timestamp, verdict.score, threshold)
            scores[i] = score
            snap.last_score = score
            if score < threshold:
                continue
            if snap.last_alert_ms is not None and feats.timestamp - snap.last_alert_ms < cooldown_ms:
                continue
            alert = build_alert(feats, stat, verdict, round(symbol_threshold, 6), self.model_version)
            snap.last_alert_ms = feats.timestamp
            snap.last_alert_id = alert.alert_id
            snap.alerts += 1
            alerts.append(alert)
        row_ticks = [i for i, *_ in staged] if self.bundle is not None else []
        return BatchResult(alerts, scores, touched, skipped, rows, row_ticks, rejected)

    def _refuse(self, snap: SymbolSnapshot, tick: Any) -> tuple[str, str] | None:
        """Why ``tick`` cannot be applied to ``snap`` (reason, detail), or None."""
        last = snap.last_event_ms
        if last is not None and tick.timestamp < last - self.config.max_lateness_ms:
            return "out_of_order", f"{tick.symbol} at {tick.timestamp} is {last - tick.timestamp} ms behind {last}"
        if tick.trade_id is not None and tick.exchange == snap.trade_exchange and tick.trade_id in snap.trade_ids:
            return "duplicate", f"{tick.symbol} trade id {tick.trade_id} from {tick.exchange} already applied"
        return None
