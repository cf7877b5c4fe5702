"""``cryptotrace backtest``: replay labelled tick files through the live pipeline and score it.

The ticks go through :meth:`models.pipeline.Pipeline.process` in event-time order and in
micro-batches, with the model and threshold chosen exactly as the worker chooses them
(:func:`app.factory.load_models`, :func:`app.factory.pipeline_config`), so the alerts are
the ones the worker would have raised on that data. They are scored with the event-level
protocol of :mod:`models.evaluation` (episodes, never point-adjusted).

Outputs in ``out``: ``alerts.jsonl`` (``Alert.to_dict()`` per line, deterministic JSON,
ordered by event time then symbol so that the file does not depend on how the data set is
split into files), ``report.json`` and ``plots/*.png``.

Per-tick scores are kept in one float64 array (8 bytes a tick) to draw the plots and the
threshold curve. The curve replays the alert decision at other thresholds: the score of a
tick does not depend on the threshold or on earlier alerts (the state only depends on the
statistical score), so an alert replay with the same event-time cooldown reproduces the
pipeline exactly; the report checks that for the operating threshold.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from tqdm import tqdm

from app.codec import encode
from app.plots import SymbolSeries, curve_plot, event_plot
from app.settings import Settings
from app.tickfiles import TickTable, read_labels, read_ticks
from models.evaluation import Event, EventReport, cooldown_alert_times, episodes, evaluate
from models.pipeline import Pipeline, SymbolSnapshot

logger = logging.getLogger(__name__)

EPISODE_GAP_S = 1800.0  # the evaluation notes' default cooldown between alarms (episodes)
CI_METRICS = ("detected", "recall", "precision", "f1", "false_alarms_per_symbol_day", "delay_median_s",
              "delay_p90_s")
# Threshold grid of the curve: linear (uncalibrated statistical scores spread over [0, 1]) plus
# logit-spaced (calibrated ensemble scores crowd near 0 and 1). 0 is excluded: a tick in the
# grace period scores exactly 0 and never alerts, which a replay at 0 could not tell apart.
CURVE_THRESHOLDS = np.unique(np.round(np.concatenate([
    np.linspace(0.02, 0.98, 49), 1.0 / (1.0 + np.exp(-np.linspace(-4.0, 12.0, 65)))]), 6))


#: One symbol's ticks in time order: (times ms, prices, scores).
Series = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class ReportOptions:
    """How the event-level report is computed and drawn (shared by backtest and replay)."""

    out: Path
    episode_gap_s: float = EPISODE_GAP_S
    max_plots: int = 30
    bootstrap: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class BacktestOptions:
    ticks: Path
    labels: Path
    out: Path
    threshold: float | None = None  # None: the worker's (settings, else the model's)
    model_version: str | None = None  # None: the worker's (settings, else the newest)
    batch_size: int | None = None  # None: settings.batch_size, as the worker
    episode_gap_s: float = EPISODE_GAP_S
    max_plots: int = 30
    bootstrap: int = 1000
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:  # fail before minutes of reading, not after
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_plots < 0 or self.bootstrap < 1 or self.episode_gap_s < 0:
            raise ValueError("max_plots must be >= 0, bootstrap >= 1 and episode_gap_s >= 0")

    def report_options(self) -> ReportOptions:
        return ReportOptions(self.out, self.episode_gap_s, self.max_plots, self.bootstrap, self.seed)


@dataclass
class Replay:
    """Everything the pipeline produced, compact: per-tick scores and the alerts."""

    scores: npt.NDArray[np.float64]
    alert_lines: list[tuple[int, str, bytes]]  # (event_time, symbol, encoded alert) for alerts.jsonl
    alerts: list[tuple[str, int, float]]  # (symbol, event_time, price)
    seconds: float


def run_pipeline(pipeline: Pipeline, table: TickTable, batch_size: int, progress: bool = True) -> Replay:
    """All ticks through ``pipeline`` in micro-batches; the only per-tick Python work is the pipeline's."""
    snapshots: dict[str, SymbolSnapshot] = {}
    scores = np.zeros(len(table), dtype=np.float64)
    lines: list[tuple[int, str, bytes]] = []
    alerts: list[tuple[str, int, float]] = []
    t0 = time.perf_counter()
    with tqdm(total=len(table), unit="tick", desc="backtest", file=sys.stderr, mininterval=1.0,
              disable=not progress) as bar:
        for lo, ticks in table.batches(batch_size):
            res = pipeline.process(snapshots, ticks)
            scores[lo:lo + len(ticks)] = [math.nan if s is None else s for s in res.scores]
            for a in res.alerts:
                lines.append((a.event_time, a.symbol, encode(a.to_dict())))
                alerts.append((a.symbol, a.event_time, a.price))
            bar.update(len(ticks))
    return Replay(scores, sorted(lines), alerts, time.perf_counter() - t0)


def by_symbol(table: TickTable, scores: npt.NDArray[np.float64]) -> dict[str, Series]:
    """symbol -> (times, prices, scores) in time order (a stable sort keeps the processing order)."""
    order = np.argsort(table.symbol, kind="stable")
    codes = table.symbol[order]
    bounds = np.searchsorted(codes, np.arange(len(table.symbols) + 1))
    out: dict[str, Series] = {}
    for c, name in enumerate(table.symbols):
        idx = order[bounds[c]:bounds[c + 1]]
        out[name] = (table.timestamp[idx], table.price[idx], scores[idx])
    return out


def replay_alerts(
    series: dict[str, Series], threshold: float, cooldown_s: float
) -> list[tuple[str, int]]:
    """The alerts the pipeline raises at ``threshold``: each symbol's ticks scoring >= it, thinned by
    the event-time cooldown (an alert needs ``t - previous alert >= cooldown``), by binary search."""
    cd = cooldown_s * 1000.0
    return [(sym, t) for sym, (times, _, scores) in series.items()
            for t in cooldown_alert_times(times[scores >= threshold], cd)]


def select_events(events: Sequence[Event], spans: dict[str, tuple[int, int]]) -> tuple[list[Event], dict[str, int]]:
    """Events that the data can decide: the symbol has ticks and the window overlaps their span."""
    kept: list[Event] = []
    ignored = {"unknown_symbol": 0, "outside_span": 0}
    for ev in events:
        span = spans.get(ev.symbol)
        if span is None:
            ignored["unknown_symbol"] += 1
        elif ev.end_ms < span[0] or ev.start_ms > span[1]:
            ignored["outside_span"] += 1
        else:
            kept.append(ev)
    if any(ignored.values()):
        logger.warning("labels not scored (no ticks to decide them): %s", ignored)
    return kept, ignored


def _ci(values: Sequence[float]) -> list[float] | None:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not arr.size:
        return None
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def bootstrap(
    report: EventReport,
    alerts: Sequence[tuple[str, int]],
    events: Sequence[Event],
    spans: dict[str, tuple[int, int]],
    episode_gap_s: float,
    resamples: int,
    seed: int,
) -> dict[str, list[float] | None]:
    """95 % percentile intervals; each replicate resamples, with replacement, the unit a metric counts:

    * events -> detected, recall, delay median / p90 (over the detected resampled events);
    * alarm episodes (each true or false) -> precision; F1 from the replicate's recall and precision;
    * symbols, each with its false alarms and observed days -> false alarms per symbol-day (a
      cluster bootstrap: false alarms bunch on noisy symbols, so episodes are not independent).
    """
    rng = np.random.default_rng(seed)
    det = np.array([d is not None for _, d in report.per_event], dtype=bool)
    delays = np.array([np.nan if d is None else d for _, d in report.per_event], dtype=np.float64)
    windows: dict[str, list[Event]] = {}
    for ev in events:
        windows.setdefault(ev.symbol, []).append(ev)
    flags: list[bool] = []
    fa_sym: dict[str, int] = dict.fromkeys(spans, 0)
    for sym, starts in episodes(alerts, episode_gap_s).items():
        for t in starts:
            true = any(w.start_ms <= t <= w.end_ms for w in windows.get(sym, ()))
            flags.append(true)
            fa_sym[sym] = fa_sym.get(sym, 0) + (not true)
    ep = np.array(flags, dtype=bool)
    fa = np.array([fa_sym[s] for s in spans], dtype=np.float64)
    days = np.array([max(0, b - a) / 86_400_000 for a, b in spans.values()], dtype=np.float64)
    out: dict[str, list[float]] = {k: [] for k in CI_METRICS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(resamples):
            e = rng.integers(0, det.size, det.size) if det.size else np.zeros(0, dtype=np.int64)
            detected = int(det[e].sum())
            recall = detected / det.size if det.size else 0.0
            precision = float(ep[rng.integers(0, ep.size, ep.size)].mean()) if ep.size else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
            s = rng.integers(0, fa.size, fa.size) if fa.size else np.zeros(0, dtype=np.int64)
            d_sum = float(days[s].sum())
            d = delays[e][det[e]]
            med, p90 = np.percentile(d, [50, 90]) if d.size else (math.nan, math.nan)
            for key, value in (("detected", detected), ("recall", recall), ("precision", precision),
                               ("f1", f1), ("false_alarms_per_symbol_day", fa[s].sum() / d_sum if d_sum else 0.0),
                               ("delay_median_s", med), ("delay_p90_s", p90)):
                out[key].append(float(value))
    return {k: _ci(v) for k, v in out.items()}


def threshold_curve(
    series: dict[str, Series], events: Sequence[Event], spans: dict[str, tuple[int, int]],
    cooldown_s: float, episode_gap_s: float, extra: float,
) -> list[dict[str, Any]]:
    """Event metrics of an alert replay at each threshold of the grid (plus the operating one)."""
    out = []
    for thr in sorted({*CURVE_THRESHOLDS.tolist(), extra}):
        if thr <= 0:
            continue
        summary = evaluate(replay_alerts(series, thr, cooldown_s), events, spans, episode_gap_s).summary()
        out.append({"threshold": thr, **{k: summary[k] for k in (
            "detected", "recall", "precision", "f1", "episodes", "false_alarms_per_symbol_day")}})
    return out


def _plots(
    out: Path, series: dict[str, Series], replay: Replay, report: EventReport,
    curve: list[dict[str, Any]], threshold: float, max_plots: int,
) -> list[str]:
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    operating = {"threshold": threshold, "recall": report.recall, "precision": report.precision}
    curve_plot(pdir / "threshold_curve.png", curve, operating)
    names.append("threshold_curve.png")
    alert_t: dict[str, list[int]] = {}
    alert_p: dict[str, list[float]] = {}
    for sym, t, p in replay.alerts:
        alert_t.setdefault(sym, []).append(t)
        alert_p.setdefault(sym, []).append(p)
    per_event = sorted(report.per_event, key=lambda ed: (ed[0].start_ms, ed[0].symbol))
    if len(per_event) > max_plots:
        logger.info("plotting the first %d of %d events (--max-plots)", max_plots, len(per_event))
    for i, (ev, delay) in enumerate(per_event[:max_plots]):
        times, prices, scores = series[ev.symbol]
        s = SymbolSeries(times, prices, scores, np.array(alert_t.get(ev.symbol, []), dtype=np.int64),
                         np.array(alert_p.get(ev.symbol, []), dtype=np.float64))
        name = f"event_{i:03d}_{''.join(c if c.isalnum() else '-' for c in ev.symbol)}_{ev.start_ms}.png"
        context = max(900_000, ev.end_ms - ev.start_ms)  # 15 min or one window length each side
        event_plot(pdir / name, s, ev, threshold, delay, context)
        names.append(name)
    return names


def backtest(pipeline: Pipeline, table: TickTable, labels: Sequence[Event], opts: BacktestOptions,
             batch_size: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``table`` through ``pipeline``, write the outputs to ``opts.out``, return the report."""
    replay = run_pipeline(pipeline, table, batch_size, opts.progress)
    return write_report(pipeline, table, replay, labels, opts.report_options(), batch_size, meta)


def write_alerts(out: Path, replay: Replay) -> None:
    """``out/alerts.jsonl``: one alert record a line, by event time then symbol."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "alerts.jsonl").open("wb") as fh:
        fh.writelines(line + b"\n" for *_, line in replay.alert_lines)


def write_report(pipeline: Pipeline, table: TickTable, replay: Replay, labels: Sequence[Event],
                 opts: ReportOptions, batch_size: int, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score what ``pipeline`` did on ``table`` (``replay``) against ``labels``; write alerts, report, plots."""
    t_start = time.perf_counter() - replay.seconds
    write_alerts(opts.out, replay)
    t_eval = time.perf_counter()
    spans = table.spans()
    events, ignored = select_events(labels, spans)
    alerts = [(s, t) for s, t, _ in replay.alerts]
    cfg = pipeline.config
    report = evaluate(alerts, events, spans, opts.episode_gap_s)
    ci = bootstrap(report, alerts, events, spans, opts.episode_gap_s, opts.bootstrap, opts.seed)
    series = by_symbol(table, replay.scores)
    replayed = replay_alerts(series, cfg.alert_threshold, cfg.cooldown_s)
    matches = sorted(replayed) == sorted(alerts)
    if not matches:
        logger.warning("alert replay at the operating threshold differs from the pipeline: curve is approximate")
    curve = threshold_curve(series, events, spans, cfg.cooldown_s, opts.episode_gap_s, cfg.alert_threshold)
    t_plot = time.perf_counter()
    plots = _plots(opts.out, series, replay, report, curve, cfg.alert_threshold, opts.max_plots)
    t_end = time.perf_counter()

    by_scenario: dict[str, dict[str, Any]] = {}
    for ev, delay in report.per_event:
        row = by_scenario.setdefault(ev.scenario or "unlabelled", {"events": 0, "detected": 0})
        row["events"] += 1
        row["detected"] += delay is not None
    for row in by_scenario.values():
        row["recall"] = round(row["detected"] / row["events"], 4)
    total_s = t_end - t_start + (meta or {}).get("read_s", 0.0)
    result: dict[str, Any] = {
        **(meta or {}),
        **report.summary(),
        "true_episodes": report.true_episodes,
        "ci95": ci,
        "bootstrap": {"resamples": opts.bootstrap, "seed": opts.seed, "interval": "percentile 2.5-97.5",
                      "units": {"detected": "events", "recall": "events", "delay_median_s": "events",
                                "delay_p90_s": "events", "precision": "alarm episodes",
                                "f1": "events and episodes (independently)",
                                "false_alarms_per_symbol_day": "symbols (cluster)"}},
        "model_version": pipeline.model_version,
        "threshold": cfg.alert_threshold,
        "cooldown_s": cfg.cooldown_s,
        "episode_gap_s": opts.episode_gap_s,
        "batch_size": batch_size,
        "ticks_processed": len(table),
        "rows_read": table.rows,
        "rejected": dict(sorted(table.rejected.items())),
        "rejected_total": sum(table.rejected.values()),
        "files": len(table.files),
        "symbols": len(table.symbols),
        "alerts": len(alerts),
        "labels": {"rows": len(labels), "scored": len(events), "ignored": ignored},
        "by_scenario": dict(sorted(by_scenario.items())),
        "per_event": [{"symbol": ev.symbol, "start": ev.start_ms, "end": ev.end_ms, "scenario": ev.scenario,
                       "detected": d is not None, "delay_s": d} for ev, d in report.per_event],
        "replay_matches_pipeline": matches,
        "threshold_curve": curve,
        "plots": plots,
        "runtime_s": {"read": round((meta or {}).get("read_s", 0.0), 3), "pipeline": round(replay.seconds, 3),
                      "evaluate": round(t_plot - t_eval, 3), "plots": round(t_end - t_plot, 3),
                      "total": round(total_s, 3)},
        "ticks_per_s": round(len(table) / replay.seconds, 1) if replay.seconds > 0 else None,
        "ticks_per_s_overall": round(len(table) / total_s, 1) if total_s > 0 else None,
    }
    result.pop("read_s", None)
    (opts.out / "report.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY))
    return result


def build_pipeline(settings: Settings, model_version: str | None, threshold: float | None) -> Pipeline:
    """The worker's pipeline (model and threshold chosen as the worker chooses them), with overrides."""
    from app.factory import load_models, pipeline_config

    updates: dict[str, Any] = {}
    if model_version is not None:
        updates["model_version"] = model_version
    if threshold is not None:
        updates["alert_threshold"] = threshold
    settings = settings.model_copy(update=updates)
    bundle = load_models(settings)
    return Pipeline(pipeline_config(settings, bundle), bundle)


def run_backtest(settings: Settings, opts: BacktestOptions) -> dict[str, Any]:
    """The command: read the data set and labels, build the pipeline as the worker does, backtest."""
    t0 = time.perf_counter()
    table = read_ticks(opts.ticks)
    labels = read_labels(opts.labels, table.symbols)
    read_s = time.perf_counter() - t0
    logger.info("read %d ticks of %d symbols from %d file(s) in %.1f s (%d rows rejected), %d labels",
                len(table), len(table.symbols), len(table.files), read_s, sum(table.rejected.values()), len(labels))
    pipeline = build_pipeline(settings, opts.model_version, opts.threshold)
    batch_size = opts.batch_size or settings.batch_size
    command = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(opts).items()}
    meta = {"command": command, "read_s": read_s}
    return backtest(pipeline, table, labels, opts, batch_size, meta)
