"""``cryptotrace ablation``: each ensemble member alone, the ensemble and baselines, compared fairly.

Protocol (what the README's ablation table reports):

1. **Scores.** Seeded synthetic data sets (the ``cryptotrace synth`` recipe: 12 symbols x 12 h,
   4 events per symbol-day, 1 h warm-up; plus ``--quiet-fraction`` of the symbols, default a
   quarter of each liquidity class, left without any event: 12 quiet hours each) are streamed
   through the worker's pipeline (model as the worker loads it); every tick gets the ensemble
   score and each member's calibrated probability from the same batch call, plus the rolling
   z-score baseline (:mod:`models.baselines`).
2. **Equal false-alarm rate.** On the *calibration* seed(s) only, each method gets the threshold with
   the best event F1 among those with at most ``--fa-cap`` false alarms per symbol-day (the same cap
   for every method; several seeds are pooled: one seed's ~17 events set a noisy threshold). Those
   thresholds are then frozen and applied to the *evaluation* seeds and to NAB ("fixed"): neither the
   evaluation seeds nor NAB choose anything.
3. **Events.** Headline: manipulation events (pump, crash, wash trading, stale price); a regime
   shift is a new normal, so it is not an event, and an alarm starting during one counts as a false
   alarm (so "must not alarm forever" is measured). ``f1_all`` also counts regime shifts as events,
   as ``cryptotrace backtest`` does.
4. **Baselines.** never-alarm; random alarms at the ensemble's alarm-episode rate on the same seed
   (mean of 20 draws); rolling z-score.
5. **NAB.** The corpus through the same pipeline (:mod:`app.nab_cmd`), each method at its frozen
   threshold (``fixed``) and at its corpus-optimised one (``optimised``), standard profile; random
   scores are uniform.
6. **Other rules.** ``ensemble/<rule>``: the same member probabilities combined by each rule the
   shipped model did not choose at training, thresholds frozen like the rest. They show whether
   training picked well; choosing the rule here would tune it on the calibration seed (NAB: no).

Writes ``ablation.json`` and ``ablation.md`` (a table for the README) in ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from tqdm import tqdm

from app import frontier, nab_data
from app.backtest import bootstrap, replay_alerts
from app.nab_cmd import CANDIDATES, cooldown_rows, load_profiles, nab_scores, score_corpus_streams, stream
from app.settings import Settings
from app.synth import synthetic_set
from models import nab
from models.baselines import random_alarms, rolling_z_scores
from models.ensemble import COMBINATIONS, MEMBERS
from models.evaluation import (
    Event,
    EventReport,
    activity_multiple,
    evaluate,
    false_alarm_contexts,
    paired_f1_difference,
    sweep_and_pick,
    symbol_counts,
)
from models.pipeline import Pipeline
from models.synthetic import PROFILE_SETS, stress_profiles
from models.thresholds import AdaptiveConfig
from models.univariate import value_ticks

logger = logging.getLogger(__name__)

EPISODE_GAP_S = 1800.0
NOT_EVENTS = frozenset({"regime_shift"})
RANDOM_DRAWS = 20
#: Threshold searches go down the candidates and stop after this many in a row over their false-alarm
#: cap: false alarms rise as the threshold falls, though not strictly, so a few more points are read.
PAST_CAP_POINTS = 12

Series = dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]]


@dataclass
class SeedRun:
    """One synthetic data set with every method's per-tick scores."""

    seed: int
    scores: dict[str, npt.NDArray[np.float64]]
    symbols: npt.NDArray[np.object_]
    times: npt.NDArray[np.int64]
    prices: npt.NDArray[np.float64]
    events: list[Event]  # manipulation events
    events_all: list[Event]  # including regime shifts
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    @functools.cached_property
    def rows(self) -> dict[str, npt.NDArray[np.intp]]:
        """Each symbol's row indices, in time order: found once per run, not once per method and threshold
        (a mask over the object array of symbols costs ~25 ms for a 2-million-tick run)."""
        order = np.argsort(self.symbols.astype(str), kind="stable")
        names = self.symbols[order]
        cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
        return {str(names[a]): order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)}

    def series(self, method: str) -> Series:
        out: Series = {}
        s = self.scores[method]
        empty = np.zeros(0, dtype=np.intp)
        for sym in sorted(self.spans):
            idx = self.rows.get(sym, empty)
            out[sym] = (self.times[idx], self.prices[idx], s[idx])
        return out


def other_rules(pipeline: Pipeline) -> list[str]:
    """Combination rules the shipped model could have used instead (post hoc rows, not chosen here)."""
    if pipeline.bundle is None:
        return []
    return [r for r in COMBINATIONS if r not in MEMBERS and r != pipeline.bundle.combination]


def rule_method(rule: str) -> str:
    return f"ensemble/{rule}"


def methods_of(pipeline: Pipeline) -> list[str]:
    base = ["ensemble", *MEMBERS] if pipeline.bundle is not None else ["statistical"]
    return [*base, "rolling_z", *map(rule_method, other_rules(pipeline))]


def run_seed(pipeline: Pipeline, seed: int, *, symbols: int, hours: float, events_per_day: float,
             batch_size: int, quiet_fraction: float = 0.0, progress: bool = True,
             profile_set: str = "default") -> SeedRun:
    """Generate one data set (the ``cryptotrace synth`` recipe) and score it with every method."""
    profiles = stress_profiles(profile_set, symbols, seed=seed)
    batch, labels = synthetic_set(symbols=symbols, hours=hours, seed=seed, events_per_day=events_per_day,
                                  quiet_fraction=quiet_fraction, profiles=profile_set)
    ticks = list(batch.ticks())
    with tqdm(total=len(ticks), unit="tick", desc=f"seed {seed}", file=sys.stderr, mininterval=2.0,
              disable=not progress) as bar:
        st = stream(pipeline, ticks, batch_size, progress=bar.update)
    del ticks
    scores: dict[str, npt.NDArray[np.float64]] = {}
    if st.members is not None:
        scores["ensemble"] = st.scores
        for j, m in enumerate(MEMBERS):
            scores[m] = st.members[:, j].copy()
        assert pipeline.bundle is not None and st.member_log_odds is not None
        scored = st.members.any(axis=1)  # the grace period scores 0 under every rule
        for rule in other_rules(pipeline):
            alt = dataclasses.replace(pipeline.bundle, combination=rule)
            scores[rule_method(rule)] = np.where(scored, alt.combine(st.member_log_odds), 0.0)
    else:
        scores["statistical"] = st.scores
    rz = np.zeros(len(batch))
    spans: dict[str, tuple[int, int]] = {}
    for p in profiles:
        m = batch.symbol == p.symbol
        if m.any():
            rz[m] = rolling_z_scores(batch.timestamp[m], batch.price[m])
            spans[p.symbol] = (int(batch.timestamp[m][0]), int(batch.timestamp[m][-1]))
    scores["rolling_z"] = rz
    events_all = [Event(lab.symbol, lab.start_ms, lab.end_ms, lab.scenario) for lab in labels]
    events = [e for e in events_all if e.scenario not in NOT_EVENTS]
    return SeedRun(seed, scores, batch.symbol, batch.timestamp, batch.price, events, events_all, spans)


# Pooling seeds: each seed's symbols are renamed ``<seed>:<symbol>`` so that they stay apart.
def _tag(run: SeedRun, symbol: str) -> str:
    return f"{run.seed}:{symbol}"


def _tag_events(run: SeedRun, events: Sequence[Event]) -> list[Event]:
    return [Event(_tag(run, e.symbol), e.start_ms, e.end_ms, e.scenario) for e in events]


def _tag_alerts(run: SeedRun, alerts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(_tag(run, s), t) for s, t in alerts]


def _tag_spans(run: SeedRun) -> dict[str, tuple[int, int]]:
    return {_tag(run, s): v for s, v in run.spans.items()}


def _pooled_events(runs: Sequence[SeedRun]) -> tuple[list[Event], dict[str, tuple[int, int]]]:
    """The manipulation events and symbol spans of several seeds, symbols renamed per seed."""
    return ([e for run in runs for e in _tag_events(run, run.events)],
            {k: v for run in runs for k, v in _tag_spans(run).items()})


def pool_runs(runs: Sequence[SeedRun]) -> SeedRun:
    """Several seeds as one run, symbols renamed per seed (one run is returned as it is)."""
    if len(runs) == 1:
        return runs[0]
    return SeedRun(
        runs[0].seed,
        {m: np.concatenate([r.scores[m] for r in runs]) for m in runs[0].scores},
        np.concatenate([np.array([_tag(r, s) for s in r.symbols.tolist()], dtype=object) for r in runs]),
        np.concatenate([r.times for r in runs]),
        np.concatenate([r.prices for r in runs]),
        [e for r in runs for e in _tag_events(r, r.events)],
        [e for r in runs for e in _tag_events(r, r.events_all)],
        {k: v for r in runs for k, v in _tag_spans(r).items()},
    )


def alerts_at(run: SeedRun, method: str, threshold: float, cooldown_s: float,
              series: Series | None = None) -> list[tuple[str, int]]:
    return replay_alerts(series or run.series(method), threshold, cooldown_s)


def calibrate(run: SeedRun, method: str, cooldown_s: float, fa_cap: float,
              candidates: npt.NDArray[np.float64] = CANDIDATES) -> tuple[float, EventReport]:
    """The threshold :func:`models.evaluation.pick_threshold` takes, at most ``fa_cap`` false alarms per symbol-day."""
    series = run.series(method)

    def figures(thr: float) -> tuple[float, float, EventReport]:
        rep = evaluate(alerts_at(run, method, thr, cooldown_s, series), run.events, run.spans, EPISODE_GAP_S)
        return rep.f1, rep.false_alarms_per_symbol_day, rep

    return sweep_and_pick(candidates.tolist(), figures, fa_cap, PAST_CAP_POINTS)


def sweep(runs: Sequence[SeedRun], method: str, cooldown_s: float,
          candidates: npt.NDArray[np.float64] = CANDIDATES) -> list[frontier.Point]:
    """Alert replays of ``method`` on the pooled ``runs`` from the highest candidate threshold down, until
    false alarms stay above :data:`app.frontier.MAX_FALSE_ALARMS` (the points of :mod:`app.frontier`)."""
    series = [run.series(method) for run in runs]
    events, spans = _pooled_events(runs)
    points: list[frontier.Point] = []
    over = 0
    for thr in sorted(candidates.tolist(), reverse=True):
        alerts = [a for run, s in zip(runs, series, strict=True)
                  for a in _tag_alerts(run, alerts_at(run, method, thr, cooldown_s, s))]
        rep = evaluate(alerts, events, spans, EPISODE_GAP_S)
        points.append(frontier.Point(thr, rep.false_alarms_per_symbol_day, rep.f1, rep.recall))
        over = over + 1 if rep.false_alarms_per_symbol_day > frontier.MAX_FALSE_ALARMS else 0
        if over >= PAST_CAP_POINTS:
            break
    return points


def counts_at(runs: Sequence[SeedRun], method: str, threshold: float, cooldown_s: float) -> npt.NDArray[np.int64]:
    """:func:`~models.evaluation.symbol_counts` of ``method`` at ``threshold`` on the pooled ``runs``
    (symbols in :func:`evaluate_method`'s order)."""
    alerts = [a for run in runs for a in _tag_alerts(run, alerts_at(run, method, threshold, cooldown_s))]
    events, spans = _pooled_events(runs)
    order = [_tag(run, sym) for run in runs for sym in sorted(run.spans)]
    return symbol_counts(evaluate(alerts, events, spans, EPISODE_GAP_S), alerts, order, EPISODE_GAP_S)


def paired_at_levels(runs: Sequence[SeedRun], frontiers: dict[str, list[frontier.Point]], lead: str,
                     cooldown_s: float, levels: Sequence[float] = frontier.LEVELS) -> dict[str, Any]:
    """At each false-alarm level, ``lead``'s F1 minus each other method's, both at their best threshold
    for that level, with the paired bootstrap over symbols. The thresholds were chosen on these runs, so
    the interval is that of the difference *given* them, not of their choice."""
    seen: dict[tuple[str, float], npt.NDArray[np.int64]] = {}  # levels mostly share a method's best threshold

    def counts(method: str, threshold: float) -> npt.NDArray[np.int64]:
        if (method, threshold) not in seen:
            seen[method, threshold] = counts_at(runs, method, threshold, cooldown_s)
        return seen[method, threshold]

    out: dict[str, Any] = {}
    for level in levels:
        best_lead = frontier.best_at(frontiers[lead], level)
        if best_lead is None:
            continue
        row: dict[str, Any] = {}
        for method, points in frontiers.items():
            best = frontier.best_at(points, level)
            if method != lead and best is not None:
                row[method] = paired_f1_difference(counts(lead, best_lead.threshold), counts(method, best.threshold))
        out[f"{level:g}"] = row
    return out


def _summary(rep: EventReport, ci: dict[str, list[float] | None] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {k: rep.summary()[k] for k in (
        "events", "detected", "recall", "precision", "f1", "false_alarms", "symbol_days",
        "false_alarms_per_symbol_day", "delay_median_s", "delay_p90_s")}
    if ci is not None:
        out["ci95"] = {k: ci[k] for k in ("f1", "recall", "precision", "false_alarms_per_symbol_day",
                                          "delay_median_s")}
    return out


def evaluate_method(runs: Sequence[SeedRun], method: str, threshold: float, cooldown_s: float,
                    resamples: int = 1000) -> dict[str, Any]:
    """Per evaluation seed and pooled (symbols renamed per seed) at a frozen threshold."""
    per_seed: dict[str, Any] = {}
    pooled_alerts: list[tuple[str, int]] = []
    pooled_events: list[Event] = []
    pooled_all: list[Event] = []
    pooled_spans: dict[str, tuple[int, int]] = {}
    by_scenario: dict[str, list[int]] = {}
    missed: list[dict[str, Any]] = []
    for run in runs:
        alerts = alerts_at(run, method, threshold, cooldown_s)
        rep = evaluate(alerts, run.events, run.spans, EPISODE_GAP_S)
        rep_all = evaluate(alerts, run.events_all, run.spans, EPISODE_GAP_S)
        ci = bootstrap(rep, alerts, run.events, run.spans, EPISODE_GAP_S, resamples, run.seed)
        per_seed[str(run.seed)] = {**_summary(rep, ci), "f1_all": rep_all.f1, "recall_all": rep_all.recall}
        pooled_alerts += _tag_alerts(run, alerts)
        pooled_events += _tag_events(run, run.events)
        pooled_all += _tag_events(run, run.events_all)
        pooled_spans.update(_tag_spans(run))
        for ev, d in rep_all.per_event:
            row = by_scenario.setdefault(ev.scenario, [0, 0])
            row[0] += 1
            row[1] += d is not None
        missed += [missed_event(run, method, ev) for ev, d in rep.per_event if d is None]
    rep = evaluate(pooled_alerts, pooled_events, pooled_spans, EPISODE_GAP_S)
    rep_all = evaluate(pooled_alerts, pooled_all, pooled_spans, EPISODE_GAP_S)
    ci = bootstrap(rep, pooled_alerts, pooled_events, pooled_spans, EPISODE_GAP_S, resamples, 0)
    contexts = false_alarm_contexts(pooled_alerts, pooled_all, NOT_EVENTS, episode_gap_s=EPISODE_GAP_S)
    order = [_tag(run, sym) for run in runs for sym in sorted(run.spans)]
    counts = symbol_counts(rep, pooled_alerts, order, EPISODE_GAP_S)
    return {"threshold": threshold, "per_seed": per_seed,
            "pooled": {**_summary(rep, ci), "f1_all": rep_all.f1, "recall_all": rep_all.recall},
            "false_alarm_contexts": contexts,
            # Per pooled symbol, in the same order for every method: what paired comparisons resample.
            "symbol_counts": {"columns": ["events", "detected", "episodes", "true_episodes"],
                              "rows": counts.tolist()},
            "by_scenario": {k: {"events": v[0], "detected": v[1]} for k, v in sorted(by_scenario.items())},
            "missed": missed}


def missed_event(run: SeedRun, method: str, event: Event) -> dict[str, Any]:
    """A missed manipulation event with what tells misses apart: its length, the symbol's trade-rate
    multiple in it (:func:`~models.evaluation.activity_multiple`) and the method's peak score in it."""
    mine = run.rows.get(event.symbol, np.zeros(0, dtype=np.intp))
    times = run.times[mine]
    inside = (times >= event.start_ms) & (times <= event.end_ms)
    multiple = activity_multiple(times, event.start_ms, event.end_ms)
    return {"seed": run.seed, "symbol": event.symbol, "scenario": event.scenario, "start_ms": event.start_ms,
            "duration_s": round((event.end_ms - event.start_ms) / 1000.0, 1),
            "trade_rate_multiple": None if multiple is None else round(multiple, 2),
            "peak_score": float(run.scores[method][mine][inside].max()) if inside.any() else None}


def paired_against(results: dict[str, Any], lead: str, others: Sequence[str]) -> dict[str, dict[str, Any]]:
    """F1 of ``lead`` minus each other method's, paired by symbol (:func:`~models.evaluation.paired_f1_difference`),
    from the ``symbol_counts`` of :func:`evaluate_method` results on the same runs."""
    def counts(m: str) -> npt.NDArray[np.int64]:
        return np.asarray(results[m]["symbol_counts"]["rows"], dtype=np.int64)

    return {m: paired_f1_difference(counts(lead), counts(m)) for m in others}


def evaluate_random(runs: Sequence[SeedRun], rates: Sequence[float]) -> dict[str, Any]:
    """Random alarms at the given episode rate per seed; means over RANDOM_DRAWS draws, pooled over seeds."""
    f1s, fas, recalls = [], [], []
    for draw in range(RANDOM_DRAWS):
        alerts: list[tuple[str, int]] = []
        events: list[Event] = []
        spans: dict[str, tuple[int, int]] = {}
        for run, rate in zip(runs, rates, strict=True):
            alerts += _tag_alerts(run, random_alarms(run.spans, rate, 1000 * run.seed + draw))
            events += _tag_events(run, run.events)
            spans.update(_tag_spans(run))
        rep = evaluate(alerts, events, spans, EPISODE_GAP_S)
        f1s.append(rep.f1)
        fas.append(rep.false_alarms_per_symbol_day)
        recalls.append(rep.recall)
    return {"rate_per_symbol_day": [round(r, 4) for r in rates], "draws": RANDOM_DRAWS,
            "pooled": {"f1": round(float(np.mean(f1s)), 4), "recall": round(float(np.mean(recalls)), 4),
                       "false_alarms_per_symbol_day": round(float(np.mean(fas)), 4),
                       "f1_range": [round(min(f1s), 4), round(max(f1s), 4)]}}


def nab_ablation(pipeline: Pipeline, nab_dir: Path, thresholds: dict[str, float], batch_size: int,
                 progress: bool = True) -> dict[str, Any]:
    """Each method on NAB at its frozen threshold (fixed) and its corpus-optimised one."""
    corpus = nab_data.load_corpus(nab_dir)
    layouts = nab.layout_corpus({k: s.timestamps for k, s in corpus.items()}, nab_data.load_windows(nab_dir))
    profiles = load_profiles(nab_dir)
    rows = cooldown_rows(pipeline)
    streams = score_corpus_streams(pipeline, corpus, batch_size, progress)
    methods = [m for m in thresholds if not m.startswith(rule_method(""))]  # NAB rows: the shipped rule only
    raw: dict[str, dict[str, npt.NDArray[np.float64]]] = {m: {} for m in [*methods, "random"]}
    bar_ms = int(round(pipeline.config.features.bar_seconds * 1000))
    rng = np.random.default_rng(0)
    for name, st in streams.items():
        if st.members is not None:
            raw["ensemble"][name] = st.scores
            for j, m in enumerate(MEMBERS):
                raw[m][name] = st.members[:, j]
        else:
            raw["statistical"][name] = st.scores
        ticks = value_ticks(corpus[name].values, nab.probation_length(len(corpus[name])), bar_ms=bar_ms)
        raw["rolling_z"][name] = rolling_z_scores(np.array([t.timestamp for t in ticks], dtype=np.int64),
                                                  np.array([t.price for t in ticks]))
        raw["random"][name] = rng.random(len(corpus[name]))
    out: dict[str, Any] = {}
    for method, scores in raw.items():
        res = nab_scores(layouts, scores, profiles, thresholds.get(method), rows)
        out[method] = res
        logger.info("NAB %s: %s", method, {k: v.get("standard") for k, v in res.items()})
    out["never"] = {"fixed": {"standard": 0.0}, "optimised": {"standard": 0.0}}
    return out


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _thr(x: float | None) -> str:
    """A threshold: near 1, its distance from 1 (thresholds run to 1 - 2e-16; 4 decimals would print 1.0000)."""
    if x is None:
        return "-"
    return f"1 - {1.0 - x:.1e}" if 0.9999 <= x < 1.0 else f"{x:.4f}"


def _ci(c: list[float] | None, nd: int = 2) -> str:
    return "" if not c else f" [{c[0]:.{nd}f}, {c[1]:.{nd}f}]"


def _seeds(seeds: int | list[int]) -> str:
    return ", ".join(map(str, seeds)) if isinstance(seeds, list) else str(seeds)


def _profile_note(profile_set: str) -> str:
    return "" if profile_set == "default" else f", symbols of the `{profile_set}` stress set"


def _paired(row: dict[str, Any]) -> str:
    diff = next((v for k, v in row.items() if k.endswith("_f1_minus_this")), None)
    return "-" if diff is None else f"{diff['difference']:+.3f}{_ci(diff['ci95'], 3)}"


def _misses(missed: list[dict[str, Any]] | None) -> str:
    """'; missed: volume_spike_flat x6.1 trades over 649 s, ...' (absent in results written before it existed)."""
    if not missed:
        return ""
    def one(m: dict[str, Any]) -> str:
        mult = m.get("trade_rate_multiple")
        return f"{m['scenario']} {'' if mult is None else f'x{mult:.1f} trades '}over {m['duration_s']:.0f} s"
    return "; missed: " + ", ".join(one(m) for m in missed)


def markdown(result: dict[str, Any]) -> str:
    """The README table."""
    syn = result["synthetic"]
    nab_res = result.get("nab", {})
    lead = "ensemble" if "ensemble" in syn["methods"] else "statistical"
    lines = [
        f"Synthetic: thresholds frozen on seed {_seeds(syn['calibration_seed'])} (best F1 with at most "
        f"{syn['fa_cap']} false alarms per symbol-day), evaluated on seeds "
        f"{', '.join(map(str, syn['eval_seeds']))} pooled"
        f"{_profile_note(syn.get('eval_profiles', 'default'))} ({syn['symbol_days']:.1f} symbol-days, "
        f"{syn['events']} manipulation events). NAB: standard profile, 58 files. The {lead} F1 minus a "
        "method's: its 95% interval is a paired bootstrap over symbols (both methods on each draw).",
        "",
        "| method | threshold | event F1 [95% CI] | false alarms / symbol-day [95% CI] | median delay s |"
        f" F1 incl. regime shifts | {lead} F1 minus this [95% CI] | NAB fixed | NAB optimised |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in syn["methods"].items():
        p = row["pooled"]
        ci = p.get("ci95", {})
        n = nab_res.get(method, {})
        label = f"{method} (not shipped)" if method.startswith(rule_method("")) else method
        lines.append(
            f"| {label} | {_thr(row.get('threshold'))} | {_fmt(p['f1'])}{_ci(ci.get('f1'))} | "
            f"{_fmt(p['false_alarms_per_symbol_day'], 2)}{_ci(ci.get('false_alarms_per_symbol_day'))} | "
            f"{_fmt(p.get('delay_median_s'), 1)} | {_fmt(p.get('f1_all'))} | {_paired(row)} | "
            f"{_fmt(n.get('fixed', {}).get('standard'), 1)} | {_fmt(n.get('optimised', {}).get('standard'), 1)} |")
    text = "\n".join(lines) + "\n"
    if syn.get("shipped"):
        text += "\nAt the worker's own threshold (and any `--also-at`), not frozen on the calibration seeds:\n\n"
        for name, row in syn["shipped"].items():
            p, ci = row["pooled"], row["pooled"].get("ci95", {})
            text += (f"* {name} at {_thr(row.get('threshold'))}: F1 {_fmt(p['f1'])}{_ci(ci.get('f1'))}, "
                     f"{_fmt(p['false_alarms_per_symbol_day'], 2)}{_ci(ci.get('false_alarms_per_symbol_day'))} "
                     f"false alarms / symbol-day, recall {_fmt(p['recall'])}{_misses(row.get('missed'))}\n")
    if syn.get("equal_false_alarms"):  # absent in results written before it existed
        text += "\n" + frontier.markdown(syn["equal_false_alarms"], syn.get("equal_false_alarms_paired"))
    return text


def run_ablation(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from app.backtest import build_pipeline

    t0 = time.perf_counter()
    pipeline = build_pipeline(settings, args.model_version, None)
    if args.adaptive:  # per-symbol adaptive thresholds (off by default), k and memory as configured
        cfg = dataclasses.replace(pipeline.config, adaptive=AdaptiveConfig(enabled=True))
        pipeline = Pipeline(cfg, pipeline.bundle)
    batch_size = args.batch_size or settings.batch_size
    cd = pipeline.config.cooldown_s
    methods = methods_of(pipeline)
    kw = {"symbols": args.symbols, "hours": args.hours, "events_per_day": args.events_per_day,
          "batch_size": batch_size, "quiet_fraction": args.quiet_fraction}
    cal = pool_runs([run_seed(pipeline, seed, **kw) for seed in args.calibration_seed])
    thresholds: dict[str, float] = {}
    calibration: dict[str, Any] = {}
    for m in methods:
        thr, rep = calibrate(cal, m, cd, args.fa_cap)
        thresholds[m] = thr
        calibration[m] = {"threshold": thr, **_summary(rep)}
        logger.info("calibrated %s: threshold %.6g, F1 %.3f, FA %.3f", m, thr, rep.f1,
                    rep.false_alarms_per_symbol_day)
    del cal
    # Thresholds are frozen on the training's kind of symbols; --eval-profiles may then evaluate
    # them on a stress set outside those ranges (a generalisation check).
    eval_profiles = getattr(args, "eval_profiles", "default")
    runs = [run_seed(pipeline, s, **kw, profile_set=eval_profiles) for s in args.eval_seeds]
    results: dict[str, Any] = {m: evaluate_method(runs, m, thresholds[m], cd) for m in methods}
    lead = "ensemble" if "ensemble" in methods else "statistical"
    for m, diff in paired_against(results, lead, [m for m in methods if m != lead]).items():
        results[m][f"{lead}_f1_minus_this"] = diff
    # The same methods at equal false-alarm rates, thresholds chosen on the evaluation seeds (app.frontier).
    frontiers = {m: sweep(runs, m, cd) for m in methods}
    paired_levels = paired_at_levels(runs, frontiers, lead, cd)
    # Operating points as shipped (not equal-FA): the worker's own thresholds.
    shipped: dict[str, Any] = {}
    if pipeline.bundle is not None:
        shipped["ensemble"] = evaluate_method(runs, "ensemble", pipeline.config.alert_threshold, cd)
        for thr in getattr(args, "also_at", None) or ():  # e.g. another model's threshold on the same scores
            shipped[f"ensemble@{thr:.10g}"] = evaluate_method(runs, "ensemble", thr, cd)
    rates = []
    for run in runs:
        rep = evaluate(alerts_at(run, lead, thresholds[lead], cd), run.events, run.spans, EPISODE_GAP_S)
        rates.append(rep.episodes / rep.symbol_days if rep.symbol_days else 0.0)
    results["random"] = {"threshold": None, **evaluate_random(runs, rates)}
    results["never"] = {"threshold": None, "pooled": {"f1": 0.0, "recall": 0.0, "false_alarms_per_symbol_day": 0.0,
                                                      "f1_all": 0.0}}
    symbol_days = sum(sum(max(0, b - a) for a, b in r.spans.values()) for r in runs) / 86_400_000
    result: dict[str, Any] = {
        "command": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "model_version": pipeline.model_version,
        "combination": None if pipeline.bundle is None else pipeline.bundle.combination,
        "adaptive_thresholds": dataclasses.asdict(pipeline.config.adaptive),
        "synthetic": {"calibration_seed": list(args.calibration_seed), "eval_seeds": list(args.eval_seeds),
                      "eval_profiles": eval_profiles,
                      "fa_cap": args.fa_cap, "symbol_days": round(symbol_days, 2),
                      "events": sum(len(r.events) for r in runs),
                      "regime_shifts": sum(len(r.events_all) - len(r.events) for r in runs),
                      "calibration": calibration, "methods": results, "shipped": shipped,
                      "equal_false_alarms": frontier.matched(frontiers),
                      "equal_false_alarms_paired": {"lead": lead, "levels": paired_levels}},
    }
    nab_dir = None if args.no_nab else (args.nab or nab_data.locate_nab_dir())
    if nab_dir is not None:
        result["nab"] = nab_ablation(pipeline, Path(nab_dir), thresholds, batch_size)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY))
    (args.out / "ablation.md").write_text(markdown(result))
    frontier.frontier_plot(args.out / "frontier.png", frontiers, lead)
    frontier.write_csv(args.out / "frontiers.csv.gz", frontiers)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryptotrace ablation``."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory (ablation.json, .md, frontier.png, frontiers.csv.gz)")
    parser.add_argument("--calibration-seed", type=int, nargs="+", default=[100],
                        help="seed(s) the thresholds are frozen on (several: pooled, symbols kept apart)")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[101, 102], help="evaluation seeds")
    parser.add_argument("--symbols", type=int, default=12)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--events-per-day", type=float, default=4.0)
    parser.add_argument("--eval-profiles", choices=PROFILE_SETS, default="default",
                        help="symbol set of the evaluation seeds (calibration always uses the default set): "
                             "a stress set checks that frozen thresholds generalise")
    parser.add_argument("--quiet-fraction", type=float, default=0.25,
                        help="share of symbols (of each liquidity class) with no event: long quiet stretches")
    parser.add_argument("--fa-cap", type=float, default=0.2,
                        help="false alarms per symbol-day every method may have on the calibration seed")
    parser.add_argument("--adaptive", action="store_true",
                        help="per-symbol adaptive thresholds on the ensemble score (off by default)")
    parser.add_argument("--nab", type=Path, default=None, help="NAB directory (default: as cryptotrace nab)")
    parser.add_argument("--no-nab", action="store_true", help="skip the NAB part")
    parser.add_argument("--model-version", default=None, help="model version (default: the worker's, newest)")
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch size (default: the worker's)")
    parser.add_argument("--also-at", type=float, nargs="*", default=[],
                        help="also evaluate the ensemble at these thresholds (e.g. an earlier model's)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``cryptotrace ablation``: prints the markdown table; exit 2 on bad input."""
    from models.errors import ConfigError

    try:
        result = run_ablation(settings, args)
    except (OSError, ValueError, ConfigError) as exc:
        logger.error("ablation failed: %s", exc)
        return 2
    sys.stdout.write(markdown(result))
    return 0
