"""Measuring instruments of the benchmark: process sampling, the contender processes, changelog timing.

* :class:`Sampler` polls one process (and its children) with psutil every 50 ms: RSS and CPU
  time (user + system). CPU over a window is interpolated between samples (psutil's CPU times
  have a 10 ms clock-tick resolution).
* :class:`Proc` runs one contender process and samples it; :class:`WorkerProc` is the real
  worker (``python -m app.cli worker``) configured through ``CRYPTOTRACE_*`` variables, polled
  on ``/stats``; :class:`OwnProc` is one of :mod:`benchmarks.contenders`, polled on its status file.
* :func:`read_changelog` and :func:`processed_times` turn the worker's state-table changelog into
  a processed time for every tick (see :mod:`benchmarks.bench` for the method).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
from aiokafka import AIOKafkaConsumer

from models._native import CORE_ENV

logger = logging.getLogger("cryptotrace.bench")
ROOT = Path(__file__).resolve().parents[1]


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (exact, linear interpolation between order statistics)."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1),
            "max": round(float(arr.max()), 1), "samples": int(arr.size)}


class Sampler(threading.Thread):
    """Samples (wall time, RSS bytes, CPU seconds) of a process tree until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name=f"sampler-{pid}")
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        procs = [root]
        next_children = 0.0
        while not self._stop_event.is_set():
            now = time.time()
            try:
                if now >= next_children:
                    procs = [root, *root.children(recursive=True)]
                    next_children = now + 1.0
                rss, cpu = 0, 0.0
                for p in procs:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu += t.user + t.system
                self.samples.append((now, rss, cpu))
            except psutil.NoSuchProcess:
                if not root.is_running():
                    return
                next_children = 0.0
            except psutil.Error:
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def peak_rss_mb(self, since: float | None = None, until: float | None = None) -> float:
        vals = [r for t, r, _ in self.samples if (since is None or t >= since) and (until is None or t <= until)]
        return round(max(vals) / 2**20, 1) if vals else float("nan")

    def cpu_at(self, t: float) -> float:
        """CPU seconds at wall time ``t`` (linear interpolation between samples)."""
        return _interpolate([(s[0], s[2]) for s in self.samples], t)


def _interpolate(points: Sequence[tuple[float, float]], t: float) -> float:
    if not points:
        return float("nan")
    i = bisect.bisect_left([p[0] for p in points], t)
    if i <= 0:
        return points[0][1]
    if i >= len(points):
        return points[-1][1]
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


class SystemSampler(threading.Thread):
    """Machine-wide busy CPU seconds (all cores) and this process's CPU, every 100 ms.

    With the contender and broker samplers it tells how much CPU *other* processes took during a
    measurement window: on a shared 2-core machine that is what disturbs the figures.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="system-sampler")
        self.interval = interval
        self.busy: list[tuple[float, float]] = []
        self.own: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._stop_event.is_set():
            now = time.time()
            t = psutil.cpu_times()
            idle = t.idle + getattr(t, "iowait", 0.0)
            guest = getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # already counted in user/nice
            self.busy.append((now, sum(t) - idle - guest))
            c = me.cpu_times()
            self.own.append((now, c.user + c.system))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def foreign_cores(self, t0: float, t1: float, *samplers: Sampler | None) -> float | None:
        """Average cores used by processes other than this one and ``samplers``' during [t0, t1]."""
        if t1 - t0 < 0.2 or len(self.busy) < 2:
            return None
        total = _interpolate(self.busy, t1) - _interpolate(self.busy, t0)
        ours = _interpolate(self.own, t1) - _interpolate(self.own, t0)
        for s in samplers:
            if s is not None:
                ours += s.cpu_at(t1) - s.cpu_at(t0)
        return round(max(0.0, total - ours) / (t1 - t0), 2)


class Proc:
    """A contender process with its log and sampler."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        # A fresh directory: a status file or table data left by an earlier run into the same --out
        # (one that was stopped, say) made the next run read a finished count at once, or crash its
        # worker on RocksDB offsets from another broker (Faust's ConsistencyError).
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.log_path = workdir / "process.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: Sampler | None = None
        self.started_at = 0.0

    def _spawn(self, cmd: list[str], env: Mapping[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.started_at = time.time()
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"{self.name} exited (code {code}); see {self.log_path}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", errors="replace")
        except OSError:
            return ""

    def rebalances(self) -> int:
        """How many times the consumer (re)joined its group (1 = no rebalance after the start)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return -1
        return text.count("(Re-)joining group") or text.count("Joined group")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if self.sampler is not None:
            self.sampler.stop()
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def count(self) -> int:
        raise NotImplementedError

    def wait_count(self, n: int, timeout: float, label: str, poll: float = 0.2) -> int:
        """Poll ``count()`` until it reaches ``n``; logs progress every 5 s. Returns the last count."""
        deadline = time.monotonic() + timeout
        next_log = time.monotonic() + 5.0
        last = 0
        while True:
            self.check_alive()
            last = self.count()
            if last >= n:
                return last
            now = time.monotonic()
            if now > deadline:
                logger.warning("%s %s: %d/%d ticks after %.0f s, giving up", self.name, label, last, n, timeout)
                return last
            if now >= next_log:
                logger.info("  %s %s: %d/%d ticks", self.name, label, last, n)
                next_log = now + 5.0
            time.sleep(poll)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a contender: the settings are the bench's, not the caller's (which would
    silently change what is measured), except which core runs: ``CRYPTOTRACE_CORE=interpreted
    cryptotrace bench`` measures the interpreted sources (``machine.core`` says which ran)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOTRACE_") or k == CORE_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class OwnProc(Proc):
    """One of :mod:`benchmarks.contenders`."""

    def __init__(self, name: str, workdir: Path, *, bootstrap: str, thr_topic: str, lat_topic: str, group: str,
                 partitions: int, thr_expect: int, lat_expect: int, kind: str | None = None,
                 fetch_wait_ms: int | None = None, event_loop: str | None = None) -> None:
        super().__init__(name, workdir)
        self.status_path = workdir / "status.json"
        self.lat_path = workdir / "latency.json"
        self.cmd = [
            sys.executable, "-m", "benchmarks.contenders", kind or name, "--bootstrap", bootstrap,
            "--thr-topic", thr_topic, "--lat-topic", lat_topic, "--group", group, "--partitions", str(partitions),
            "--thr-expect", str(thr_expect), "--lat-expect", str(lat_expect), "--status", str(self.status_path),
            "--lat-out", str(self.lat_path), "--datadir", str(workdir / "data"),
        ]
        if fetch_wait_ms:
            self.cmd += ["--fetch-wait-ms", str(fetch_wait_ms)]
        if event_loop:
            self.cmd += ["--event-loop", event_loop]

    def start(self) -> OwnProc:
        self._spawn(self.cmd, child_env({}))
        return self

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_path.read_bytes()))
        except (OSError, ValueError):
            return {}

    def count(self) -> int:
        return int(self.status().get("thr_count", 0))

    def lat_count(self) -> int:
        return int(self.status().get("lat_count", 0))

    def latency_samples(self, timeout: float = 10.0) -> tuple[list[int], list[float]]:
        deadline = time.monotonic() + timeout
        while not self.lat_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.lat_path.exists():
            return [], []
        data = orjson.loads(self.lat_path.read_bytes())
        return list(data["ts"]), list(data["done"])


class WorkerProc(Proc):
    """The real worker, ``python -m app.cli worker``, as an operator runs it (env configuration)."""

    def __init__(self, name: str, workdir: Path, *, broker_url: str, app_id: str, ticks_topic: str, partitions: int,
                 model_dir: Path, port: int, fetch_wait_ms: int | None = None, event_loop: str | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        super().__init__(name, workdir)
        self.fetch_wait_ms = fetch_wait_ms
        self.app_id = app_id
        self.port = port
        self.env = child_env({
            "CRYPTOTRACE_BROKER_URL": broker_url,
            "CRYPTOTRACE_APP_ID": app_id,
            "CRYPTOTRACE_TICKS_TOPIC": ticks_topic,
            "CRYPTOTRACE_ALERTS_TOPIC": f"{app_id}-alerts",
            "CRYPTOTRACE_DLQ_TOPIC": f"{app_id}-dlq",
            "CRYPTOTRACE_TOPIC_PARTITIONS": str(partitions),
            "CRYPTOTRACE_DATA_DIR": str(workdir / "data"),
            "CRYPTOTRACE_WEB_PORT": str(port),
            "CRYPTOTRACE_MODEL_DIR": str(model_dir),
            # Start-up only: Tansu answers the first JoinGroup after half the session timeout.
            "CRYPTOTRACE_REBALANCE_TIMEOUT_S": "4",
            "CRYPTOTRACE_SESSION_TIMEOUT_S": "4",
            "CRYPTOTRACE_HEARTBEAT_INTERVAL_S": "1",
            **({"CRYPTOTRACE_EVENT_LOOP": event_loop} if event_loop else {}),
            # The worker's own setting, not benchmarks.fetchwait: its transport sets the consumer's wait
            # from the settings after the consumer is built, which undid the shim's cap (until
            # 2026-12-06 the worker's "short fetch wait" runs waited the default 100 ms).
            **(extra_env or {}),
            **({"CRYPTOTRACE_CONSUMER_FETCH_MAX_WAIT_MS": str(fetch_wait_ms)} if fetch_wait_ms else {}),
        })

    @property
    def changelog_topic(self) -> str:
        return f"{self.app_id}-symbol-state-changelog"

    def start(self) -> WorkerProc:
        self._spawn([sys.executable, "-m", "app.cli", "worker"], self.env)
        return self

    def get(self, path: str, timeout: float = 5.0) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def stats(self) -> dict[str, Any]:
        body = self.get("/stats")
        return dict(body) if isinstance(body, dict) else {}

    def batches(self) -> int | None:
        """The worker's ``cryptotrace_batches_total`` (micro-batches processed), from /metrics."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:  # noqa: S310
                text = resp.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cryptotrace_batches_total "):
                return int(float(line.split()[1]))
        return None

    def count(self) -> int:
        return int(self.stats().get("ticks_processed", 0))

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: /stats not answering after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)


# --------------------------------------------------------------------------- changelog timing
def _snapshot(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value: Any = orjson.loads(raw)
    if isinstance(value, str):  # bytes through Faust's json value serializer: JSON in a JSON string
        value = orjson.loads(value)
    return value if isinstance(value, dict) else None


async def _read_changelog(bootstrap: str, topic: str, expected: Mapping[str, int],
                          timeout: float, idle_s: float) -> dict[str, list[tuple[int, int]]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_bytes=64 * 2**20,
                                max_partition_fetch_bytes=16 * 2**20)
    await consumer.start()
    out: dict[str, list[tuple[int, int]]] = {}
    missing = {s for s, n in expected.items() if n > 0}
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while missing and time.monotonic() < deadline and time.monotonic() - last_new < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                if records:
                    last_new = time.monotonic()
                for r in records:
                    snap = _snapshot(r.value)
                    if snap is None:
                        continue
                    sym, ticks = str(snap["symbol"]), int(snap["ticks"])
                    out.setdefault(sym, []).append((ticks, int(r.timestamp)))
                    if ticks >= expected.get(sym, 0):
                        missing.discard(sym)
    finally:
        await consumer.stop()
    return out


def read_changelog(bootstrap: str, topic: str, expected: Mapping[str, int], timeout: float = 120.0,
                   idle_s: float = 5.0) -> dict[str, list[tuple[int, int]]]:
    """Per symbol, the (cumulative ticks, record timestamp ms) of every snapshot the worker wrote.

    Stops when every symbol's snapshot reached its ``expected`` tick count (or nothing new came
    for ``idle_s``).
    """
    return asyncio.run(_read_changelog(bootstrap, topic, expected, timeout, idle_s))


def processed_times(sent: Sequence[tuple[str, int]], changelog: Mapping[str, list[tuple[int, int]]]
                    ) -> list[int | None]:
    """For each sent tick (symbol, _) in send order, when the worker had processed it (ms), or None.

    The k-th tick of a symbol is processed when the first snapshot of that symbol with a tick
    count >= k was written (snapshots of one symbol are written in processing order).
    """
    marks: dict[str, tuple[list[int], list[int]]] = {}
    for sym, entries in changelog.items():
        entries = sorted(entries)
        counts: list[int] = []
        times: list[int] = []
        best: int | None = None
        # A later snapshot with the same count (redelivery) does not move the time back.
        for cnt, ts in entries:
            if counts and cnt == counts[-1]:
                continue
            best = ts if best is None else max(best, ts)
            counts.append(cnt)
            times.append(best)
        marks[sym] = (counts, times)
    seen: dict[str, int] = {}
    out: list[int | None] = []
    for sym, _ in sent:
        k = seen.get(sym, 0) + 1
        seen[sym] = k
        counts, times = marks.get(sym, ([], []))
        i = bisect.bisect_left(counts, k)
        out.append(times[i] if i < len(counts) else None)
    return out


#: Snapshot writes closer together than this belong to one micro-batch's flush (one write per symbol,
#: sent in one loop); micro-batches are >= 50 ms apart (``batch_within_s``) plus their processing.
BATCH_WRITE_GAP_MS = 20


def throughput_from_changelog(changelog: Mapping[str, list[tuple[int, int]]],
                              gap_ms: int = BATCH_WRITE_GAP_MS) -> dict[str, float]:
    """Ticks/s from the end of the first micro-batch's writes to the last write (cumulative counts).

    The first micro-batch was processed before its writes, that is before the span starts, so all
    of its ticks are left out: its writes are the first burst (writes less than ``gap_ms`` apart).
    Leaving out only the writes of the first millisecond counted the rest of that burst's ticks
    inside the span: with a few large batches that inflated the rate (224,519 ticks/s from 2 batches).
    """
    events: list[tuple[int, int]] = []  # (time, ticks added)
    for entries in changelog.values():
        prev = 0
        for cnt, ts in sorted(entries):
            if cnt > prev:
                events.append((ts, cnt - prev))
                prev = cnt
    if not events:
        return {}
    events.sort()
    end = 0
    while end + 1 < len(events) and events[end + 1][0] - events[end][0] < gap_ms:
        end += 1
    t_first, t_last = events[end][0], events[-1][0]
    total = sum(n for _, n in events)
    at_first = sum(n for _, n in events[: end + 1])
    span_s = (t_last - t_first) / 1000.0
    return {"first_ms": t_first, "last_ms": t_last, "ticks": total, "ticks_in_span": total - at_first,
            "span_s": span_s, "ticks_per_s": (total - at_first) / span_s if span_s > 0 else float("nan")}

