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
from typing import TYPE_CHECKING, Any, Final

from models._fastinit import field_values
from models.alerts import Alert, build_alert
from models.detectors.statistical import StatisticalConfig, StatisticalDetector, StatResult
from models.ensemble import ModelBundle, model_scores, model_verdict, stat_verdict
from models.features import FeatureConfig, FeatureEngine, Features
from models.thresholds import AdaptiveConfig, AdaptiveThreshold, adaptive_state
from models.ticks import Tick

if TYPE_CHECKING:  # the member probabilities are a numpy array; the core itself never imports numpy
    import numpy as np
    import numpy.typing as npt

#: 2 added the per-symbol adaptive threshold ("thr"); a version-1 snapshot loads with a fresh one.
SNAPSHOT_SCHEMA_VERSION = 2
_READABLE_SCHEMA_VERSIONS = (1, 2)
STAT_ONLY_VERSION = "stat-only"
RECENT_TRADE_IDS: Final = 32
#: The lowest score of a scored tick. 0 marks a tick of a symbol still in its grace period (unscored);
#: a stacked score far below every threshold (shown as 0 at the alerts' 6 decimals) must not read as one.
SCORE_FLOOR: Final = 1e-6
#: Ticks folded and scored in one step of :meth:`Pipeline.process`: bounds its transient memory (every
#: tick's features, statistics and model row live until the step is scored). 512, not 4,096: the batched
#: worker was faster in five of five alternating end-to-end pairs, by 7-68 % (median 35 %; AMD EPYC,
#: benchmarks/results/2026-12-06-e2e-ab-step-512.json); 256 made no difference (-0 to +7 %). Why is not
#: settled: the pure core timed alone (benchmarks.step_size) gave 8.3 against 11.4 us a tick in one run
#: and no difference in another; fewer objects alive per step leave less for the caches and for each
#: garbage collection to go through.
MAX_TICKS_PER_STEP: Final = 512


def decision_score(s: float) -> float:
    """The score a tick is judged by: the ensemble score as computed (0 when not finite).

    Not rounded: the verdict and the alert show 6 decimals, but a decision on the rounded score tied
    every score above 1 - 5e-7 (stacked log-odds past ~14.5) at 1.0, where training chose its threshold
    on the unrounded one; float64 keeps scores apart up to log-odds ~36. Here, beside the per-tick loop
    that calls it, so that the call is a compiled one.
    """
    return s if math.isfinite(s) else 0.0


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

    def __reduce__(self) -> tuple[type[PipelineConfig], tuple[Any, ...]]:
        return PipelineConfig, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


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
    # At least every id in trade_ids (None: not known yet): an id above it is not a duplicate, without
    # scanning the list, which cost ~2.5 % of the batched worker's time. Derived, so not in the state.
    trade_id_max: int | None = field(default=None, compare=False)

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


@dataclass(slots=True)
class Position:
    """Where a tick came from in Kafka (absent in file backtests). A value: never changed once built
    (not ``frozen``, for its compiled constructor: see :class:`~models.features.Features`)."""

    topic: str
    partition: int
    offset: int

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset

    @property
    def key(self) -> str:
        return f"{self.topic}/{self.partition}"

    def __reduce__(self) -> tuple[type[Position], tuple[Any, ...]]:
        return Position, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


def record_positions(topic: str, partition: int, first_offset: int, n: int) -> list[Position]:
    """The positions of the ``n`` ticks of one Kafka record: ``first_offset`` (the record's offset, shifted
    by the caller), then one more per tick. Compiled, for the worker's per-record loop."""
    return [Position(topic, partition, first_offset + j) for j in range(n)]


def symbols_of(ticks: Sequence[Tick]) -> set[str]:
    """The distinct symbols of ``ticks`` (a batched record usually holds one)."""
    return {tick.symbol for tick in ticks}


def last_scored_by_symbol(ticks: Sequence[Tick], scores: Sequence[float | None]) -> dict[str, int]:
    """Per symbol, the rank among the scored ticks (``scores[i]`` not None) of its last scored tick:
    the row of its member probabilities in the batch's model call."""
    out: dict[str, int] = {}
    k = 0
    for i in range(len(ticks)):
        if scores[i] is not None:
            out[ticks[i].symbol] = k
            k += 1
    return out


def bar_points(ticks: Sequence[Tick], scores: Sequence[float | None], bar_ms: int) -> dict[str, list[list[float]]]:
    """Per symbol, the batch's scored ticks (``scores[i]`` not None) folded into chart points
    ``[bar start, last price, highest score]``, a new point only when a tick's event-time bar is later
    than the current point's (a late tick joins the current point): what the dashboard's history draws,
    per point instead of per tick (``app.summary.History.fold``)."""
    out: dict[str, list[list[float]]] = {}
    for i in range(len(ticks)):
        score = scores[i]
        if score is None:
            continue
        tick = ticks[i]
        bar = float(tick.timestamp // bar_ms * bar_ms)
        points = out.get(tick.symbol)
        if points is None:
            points = out[tick.symbol] = []
        if points and points[-1][0] >= bar:
            last = points[-1]
            last[1] = tick.price
            if score > last[2]:
                last[2] = score
        else:
            points.append([bar, tick.price, score])
    return out


@dataclass(slots=True)
class BatchResult:
    alerts: list[Alert]
    scores: list[float | None]  # per input tick, None when skipped as already applied
    touched: set[str]  # symbols whose snapshot changed
    skipped: int = 0
    # With a model: the forests' input row of each scored tick and that tick's index in the input
    # (for periodic retraining, models.retraining); empty without a model or when not asked for.
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
        ticks: Sequence[Tick],
        positions: Sequence[Position] | None = None,
        *,
        model_rows: bool = True,
    ) -> BatchResult:
        """Fold ``ticks`` (in arrival order) into ``snapshots``; return alerts and scores.

        ``model_rows=False``: the result carries no model input rows (``BatchResult.model_rows``), which
        only a retraining job reads. The worker asks for none: a 100,000-tick batch kept 100,000 lists
        of 15 boxed floats alive until the batch was done.

        A batch longer than :data:`MAX_TICKS_PER_STEP` is folded in steps of that many ticks:
        a step keeps every tick's features, statistics and model row alive until it is scored
        (~2 KB a tick): with 100,000-tick batches (1,000 records of 100 ticks) the benchmark's
        batched worker peaked at 303-322 MB, 232 MB in 4,096-tick steps. The result does not depend on
        where batches are cut (tests/models/test_pipeline.py), so neither on the steps.
        """
        n = len(ticks)
        if n <= MAX_TICKS_PER_STEP:
            return self._step(snapshots, ticks, positions, model_rows)
        out = BatchResult([], [], set())
        for lo in range(0, n, MAX_TICKS_PER_STEP):
            hi = lo + MAX_TICKS_PER_STEP
            part = self._step(snapshots, ticks[lo:hi], None if positions is None else positions[lo:hi], model_rows)
            out.alerts.extend(part.alerts)
            out.scores.extend(part.scores)
            out.touched |= part.touched
            out.skipped += part.skipped
            out.model_rows.extend(part.model_rows)
            out.model_row_ticks.extend(lo + i for i in part.model_row_ticks)
            out.rejected.extend((lo + i, reason, detail) for i, reason, detail in part.rejected)
        return out

    def _step(
        self,
        snapshots: MutableMapping[str, SymbolSnapshot],
        ticks: Sequence[Tick],
        positions: Sequence[Position] | None,
        model_rows: bool = True,
    ) -> BatchResult:
        # The per-tick loops are the worker's hot path: attributes and methods are bound to
        # locals once per batch, and the cheap common cases are tested inline before any call
        # (a tick is refused, a symbol is new, the adaptive threshold is on, a Verdict is
        # needed). The decisions and the arithmetic are the same as in the plain version.
        config = self.config
        bundle = self.bundle
        max_lateness_ms = config.max_lateness_ms
        get_snapshot = snapshots.get
        staged: list[tuple[int, SymbolSnapshot, Features, StatResult]] = []
        touched: set[str] = set()
        skipped = 0
        rejected: list[tuple[int, str, str]] = []
        # A batch's ticks come from a few partitions: their "topic/partition" key is built once per run of
        # them, not once per tick.
        key = key_topic = ""
        key_partition = -1
        for i, tick in enumerate(ticks):
            symbol = tick.symbol
            snap = get_snapshot(symbol)
            if snap is None:
                snap = self.snapshot_for(snapshots, symbol)
            if positions is not None:
                pos = positions[i]
                if pos.partition != key_partition or pos.topic != key_topic:
                    key, key_topic, key_partition = pos.key, pos.topic, pos.partition
                if snap.offsets.get(key, -1) >= pos.offset:
                    skipped += 1
                    continue
                snap.offsets[key] = pos.offset
            timestamp = tick.timestamp
            trade_id = tick.trade_id
            last_event_ms = snap.last_event_ms
            # _refuse's two conditions, tested here so that the common (accepted) tick costs no call.
            if (last_event_ms is not None and timestamp < last_event_ms - max_lateness_ms) or (
                trade_id is not None
                and tick.exchange == snap.trade_exchange
                and (snap.trade_id_max is None or trade_id <= snap.trade_id_max)
                and trade_id in snap.trade_ids
            ):
                refused = self._refuse(snap, tick)
                if refused is not None:
                    rejected.append((i, *refused))
                    if positions is not None:
                        touched.add(symbol)  # its recorded offset: a redelivery is skipped, not re-rejected
                    continue
            if trade_id is not None:
                if tick.exchange != snap.trade_exchange:
                    snap.trade_ids, snap.trade_exchange, snap.trade_id_max = [], tick.exchange, None
                trade_ids = snap.trade_ids
                top = snap.trade_id_max
                if top is None:  # a restored or new snapshot: the bound from its list
                    top = max(trade_ids) if trade_ids else trade_id
                snap.trade_id_max = trade_id if trade_id > top else top
                trade_ids.append(trade_id)
                if len(trade_ids) > RECENT_TRADE_IDS:
                    del trade_ids[:-RECENT_TRADE_IDS]
            feats = snap.features.update(tick)
            stat_detector = snap.stat
            stat = stat_detector.score_one_raw(feats)
            stat_detector.learn_one(feats, stat)
            snap.ticks += 1
            snap.last_price = tick.price
            # The symbol's latest event time: monotonic, so the lateness bound cannot drift backwards.
            # (feats.timestamp is tick.timestamp; max() spelled out, keeping the first of equals.)
            snap.last_event_ms = (
                timestamp if last_event_ms is None else timestamp if timestamp > last_event_ms else last_event_ms
            )
            staged.append((i, snap, feats, stat))
            touched.add(symbol)

        # A tick's Verdict (severity, confidence, members) is only needed when it raises an alert:
        # per tick only its score is computed (the same value as Verdict.score), the Verdict is
        # built for an alert. Without a model the verdict score is the statistical score.
        ens: list[float] = []
        probs: npt.NDArray[np.float64] | None = None
        if bundle is not None:
            rows = [stat.model_input(feats) for _, _, feats, stat in staged]
            if staged:  # one model call per batch (none for an empty one, as verdicts())
                ens, probs = model_scores([s.score for *_, s in staged], rows, bundle)
        else:
            rows = []

        scores: list[float | None] = [None] * len(ticks)
        alerts: list[Alert] = []
        cooldown_ms = config.cooldown_s * 1000.0
        threshold = config.alert_threshold
        for k, (i, snap, feats, stat) in enumerate(staged):
            if not stat.active:
                scores[i] = snap.last_score = 0.0
                continue
            verdict_s = stat.score if bundle is None else decision_score(ens[k])
            # The symbol's own threshold: the score is shifted so that comparing it with the global
            # threshold applies it (see models.thresholds); it is then updated with this tick,
            # unless this tick is flagged. Sequential per tick: independent of the batch boundaries.
            # step() = adjusted(), threshold(), learn() in that order.
            score, symbol_threshold = snap.adaptive.step(feats.timestamp, verdict_s, threshold)
            if score < SCORE_FLOOR:  # 0 marks the grace period; a scored tick is never 0
                score = SCORE_FLOOR
            scores[i] = score
            snap.last_score = score
            if score < threshold:
                continue
            if snap.last_alert_ms is not None and feats.timestamp - snap.last_alert_ms < cooldown_ms:
                continue
            if bundle is None:
                verdict = stat_verdict(stat.score, threshold)
            else:
                assert probs is not None  # a model scored this batch
                verdict = model_verdict(ens[k], probs[k].tolist(), threshold)
            alert = build_alert(feats, stat, verdict, round(symbol_threshold, 6), self.model_version)
            snap.last_alert_ms = feats.timestamp
            snap.last_alert_id = alert.alert_id
            snap.alerts += 1
            alerts.append(alert)
        if bundle is None or not model_rows:
            return BatchResult(alerts, scores, touched, skipped, [], [], rejected)
        return BatchResult(alerts, scores, touched, skipped, rows, [i for i, *_ in staged], rejected)

    def _refuse(self, snap: SymbolSnapshot, tick: Tick) -> tuple[str, str] | None:
        """Why ``tick`` cannot be applied to ``snap`` (reason, detail), or None."""
        last = snap.last_event_ms
        if last is not None and tick.timestamp < last - self.config.max_lateness_ms:
            return "out_of_order", f"{tick.symbol} at {tick.timestamp} is {last - tick.timestamp} ms behind {last}"
        if tick.trade_id is not None and tick.exchange == snap.trade_exchange and tick.trade_id in snap.trade_ids:
            return "duplicate", f"{tick.symbol} trade id {tick.trade_id} from {tick.exchange} already applied"
        return None
