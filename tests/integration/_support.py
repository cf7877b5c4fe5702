"""Support code of the integration tests: per-test names, the worker subprocess, Kafka helpers."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from app.broker import EmbeddedBroker, free_port
from app.feed import produce_ticks
from app.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
#: A raw input record: (key, value, partition); partition None lets the client choose.
Raw = tuple[bytes | None, bytes | None, int | None]
_counter = itertools.count(1)


def tail(path: Path, chars: int = 12_000) -> str:
    """The last ``chars`` characters of a log file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<no log: {exc}>"
    return data[-chars:].decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- per-test names
@dataclass(frozen=True)
class Names:
    """App id and topics unique to one test, on the shared broker."""

    app_id: str
    ticks: str
    alerts: str
    dlq: str

    def create_topics(self, broker: EmbeddedBroker) -> None:
        """Create the three topics with PARTITIONS partitions (before any producer writes)."""
        counts = ensure_topics(broker.url, [self.ticks, self.alerts, self.dlq], PARTITIONS)
        assert counts.get(self.ticks) == PARTITIONS, counts


def make_names(label: str) -> Names:
    """Fresh app id and topic names (the broker lives for the whole session)."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40]
    base = f"it{next(_counter)}-{slug}-{os.getpid()}"
    return Names(app_id=f"{base}-app", ticks=f"{base}-ticks", alerts=f"{base}-alerts", dlq=f"{base}-dlq")


class Workers:
    """Starts workers for one scenario, remembers their logs, stops them all."""

    def __init__(self, broker: EmbeddedBroker, names: Names, root: Path) -> None:
        self.broker = broker
        self.names = names
        self.root = root
        self.started: list[Worker] = []
        self.logs: list[tuple[str, Path]] = [("broker log", broker.log_path or Path("/dev/null"))]

    def start(self, label: str = "worker", *, data_dir: Path | None = None, **extra_env: str) -> Worker:
        w = Worker(self.broker, self.names, self.root / label, data_dir=data_dir, extra_env=extra_env)
        self.started.append(w)
        self.logs.append((f"{label} log", w.log_path))
        return w.start()

    def stop_all(self) -> None:
        for w in self.started:
            w.stop()


# --------------------------------------------------------------------------- worker
class Worker:
    """One ``python -m app.cli worker`` subprocess and its web API."""

    def __init__(self, broker: EmbeddedBroker, names: Names, workdir: Path, *, data_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.broker = broker
        self.names = names
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or workdir / "data"
        self.model_dir = workdir / "models"  # empty: statistical layer only
        self.model_dir.mkdir(exist_ok=True)
        self.log_path = workdir / "worker.log"
        self.port = free_port()
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOTRACE_")}
        env.update({
            "CRYPTOTRACE_BROKER_URL": self.broker.url,
            "CRYPTOTRACE_APP_ID": self.names.app_id,
            "CRYPTOTRACE_TICKS_TOPIC": self.names.ticks,
            "CRYPTOTRACE_ALERTS_TOPIC": self.names.alerts,
            "CRYPTOTRACE_DLQ_TOPIC": self.names.dlq,
            "CRYPTOTRACE_TOPIC_PARTITIONS": str(PARTITIONS),
            "CRYPTOTRACE_DATA_DIR": str(self.data_dir),
            "CRYPTOTRACE_WEB_PORT": str(self.port),
            "CRYPTOTRACE_MODEL_DIR": str(self.model_dir),
            # TEST_WORKER_LOG_LEVEL=debug when chasing a failure: the worker logs are kept in the test's tmp dir.
            "CRYPTOTRACE_LOG_LEVEL": os.environ.get("TEST_WORKER_LOG_LEVEL", "info"),
            # A configured broker gets Faust's production timeouts (60 s rebalance): too slow
            # for a one-node local broker (see shared notes: ~32 s vs ~6.5 s to ready).
            "CRYPTOTRACE_REBALANCE_TIMEOUT_S": "5",
            "CRYPTOTRACE_SESSION_TIMEOUT_S": "10",
            "CRYPTOTRACE_HEARTBEAT_INTERVAL_S": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> Worker:
        assert self.proc is None, "already started"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=self.env(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self) -> None:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"worker exited (code {code}); log tail:\n{tail(self.log_path, 4000)}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET ``path``: (status, decoded JSON or text). Status 0 when not reachable."""
        return self.request(urllib.request.Request(self.base_url + path), timeout)

    def post(self, path: str, body: Any, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        """POST ``body`` as JSON, with ``Authorization: Bearer <token>`` when given."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        return self.request(req, timeout)

    def request(self, req: urllib.request.Request, timeout: float) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                body, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            body, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        except (OSError, ValueError):
            return 0, None
        text = body.decode("utf-8", errors="replace")
        if "json" in ctype:
            try:
                return status, json.loads(text)
            except ValueError:
                pass
        return status, text

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll /stats until it answers 200; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self._check_alive()
            status, _ = self.get("/stats", timeout=2.0)
            if status == 200:
                return time.monotonic() - t0
            time.sleep(0.25)
        raise AssertionError(f"worker not ready within {timeout}s; log tail:\n{tail(self.log_path, 4000)}")

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/stats")
        assert status == 200, (status, body)
        return dict(body)

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, (status, body)
        return str(body)

    def symbol(self, symbol: str) -> tuple[int, Any]:
        return self.get("/symbols/" + urllib.request.quote(symbol, safe=""))

    def counters(self) -> dict[str, float]:
        """The worker's ``cryptotrace_*_total`` counters (labels summed), from /metrics."""
        out: dict[str, float] = {}
        for name, value in re.findall(r"^cryptotrace_(\w+)_total(?:\{[^}]*\})? (\S+)$", self.metrics(), re.M):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def wait_processed(self, n: int, timeout: float = 90.0, quiet_s: float = 3.0) -> dict[str, float]:
        """Poll until ``ticks_processed >= n``; returns the last counters.

        Also returns once every record has come through but fewer than ``n`` ticks were
        applied (``processed + redelivered >= n`` and no counter moved for ``quiet_s``), so
        that a test asserting ``processed == n`` fails at once instead of timing out.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, float] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                now = self.counters()
            except AssertionError:  # web server busy or restarting: try again
                time.sleep(0.25)
                continue
            processed = now.get("ticks_processed", 0.0)
            if processed >= n:
                return now
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif processed + now.get("ticks_redelivered", 0.0) >= n and time.monotonic() - quiet_since >= quiet_s:
                return now
            time.sleep(0.25)
        raise AssertionError(f"ticks_processed did not reach {n} within {timeout}s (last counters {last})")

    def symbol_ticks(self, symbols: Iterable[str]) -> dict[str, int]:
        """Ticks per symbol from /symbols/{s} (-1 when the worker does not know the symbol)."""
        out = {}
        for sym in symbols:
            status, body = self.symbol(sym)
            out[sym] = int(body["ticks"]) if status == 200 else -1
        return out

    def wait_symbol_ticks(self, expected: dict[str, int], timeout: float = 60.0) -> dict[str, int]:
        """Poll /symbols/{s} until every symbol reports the expected tick count; returns the last counts."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            seen = self.symbol_ticks(expected)
            if seen == expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.25)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return self.returncode if self.returncode is not None else 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.returncode = proc.returncode
        self.proc = None
        self._log.close()
        return self.returncode


# --------------------------------------------------------------------------- Kafka helpers
def produce_keyed(broker: EmbeddedBroker, topic: str, records: Iterable[dict[str, Any]]) -> int:
    """Send tick dicts keyed by symbol (``app.feed.produce_ticks``), as fast as possible."""
    return asyncio.run(produce_ticks(broker.url, topic, records, live_from_ms=None))


async def _produce_raw(bootstrap: str, topic: str, items: list[Raw]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition) for key, value, partition in items]
        await asyncio.gather(*futures)
        await producer.flush()
    finally:
        await producer.stop()


def produce_raw(broker: EmbeddedBroker, topic: str, items: Iterable[Raw]) -> int:
    """Send raw (key, value, partition) records in order; ``partition=None`` lets the client choose."""
    batch = list(items)
    asyncio.run(_produce_raw(broker.bootstrap, topic, batch))
    return len(batch)


class PacedProducer:
    """Produces raw records in a background thread at a fixed rate: a live feed a test can act during.

    ``done`` is set once every record was sent and flushed; ``sent`` counts the records sent so far;
    an exception in the thread is re-raised by :meth:`join`.
    """

    def __init__(self, broker: EmbeddedBroker, topic: str, items: list[Raw], *, records_per_s: float,
                 chunk: int = 50) -> None:
        self._bootstrap, self._topic, self._items = broker.bootstrap, topic, items
        self._interval = chunk / records_per_s
        self._chunk = chunk
        self.sent = 0
        self.done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by join()
            self._error = exc

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, linger_ms=5, acks=1)
        await producer.start()
        try:
            start = time.monotonic()
            for n, i in enumerate(range(0, len(self._items), self._chunk)):
                # A fixed schedule, not a fixed sleep: a slow send does not stretch the stream.
                await asyncio.sleep(max(0.0, start + n * self._interval - time.monotonic()))
                futures = [await producer.send(self._topic, value, key=key, partition=partition)
                           for key, value, partition in self._items[i:i + self._chunk]]
                await asyncio.gather(*futures)
                self.sent += len(futures)
            await producer.flush()
        finally:
            await producer.stop()
        self.done.set()

    def join(self, timeout: float) -> int:
        """Wait for the last record; returns how many were sent."""
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert self.done.is_set(), f"paced producer not done after {timeout}s ({self.sent} of {len(self._items)})"
        return self.sent


async def _read_all(bootstrap: str, topic: str, idle_s: float, timeout: float) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
                if records:
                    last_new = time.monotonic()
    finally:
        await consumer.stop()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def read_topic(broker: EmbeddedBroker, topic: str, idle_s: float = 2.0, timeout: float = 60.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the earliest offset, until none arrived for ``idle_s``."""
    return asyncio.run(_read_all(broker.bootstrap, topic, idle_s, timeout))


def read_json(broker: EmbeddedBroker, topic: str, idle_s: float = 2.0) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(broker, topic, idle_s=idle_s)]


# --------------------------------------------------------------------------- cluster helpers
def wait_assigned(workers: list[Worker], topic: str, partitions: int = PARTITIONS, timeout: float = 60.0) -> dict[
        str, list[int]]:
    """Poll /cluster and /ready until ``workers`` split all of ``topic``'s partitions, each owning some.

    Returns worker URL -> active partitions of ``topic``.
    """
    deadline = time.monotonic() + timeout
    last: dict[str, list[int]] = {}
    while time.monotonic() < deadline:
        last = {}
        for w in workers:
            w._check_alive()
            status, body = w.get("/cluster")
            ready, _ = w.get("/ready")
            if status != 200 or ready != 200:
                break
            last[w.base_url] = list(body["active"].get(topic, []))
        else:
            owned = sorted(p for ps in last.values() for p in ps)
            if owned == list(range(partitions)) and all(last.values()):
                return last
        time.sleep(0.25)
    raise AssertionError(f"partitions of {topic} not split over {len(workers)} workers within {timeout}s: {last}")


def total_processed(workers: list[Worker]) -> float:
    return sum(w.counters().get("ticks_processed", 0.0) for w in workers if w.alive())


#: Environment for workers whose tables must recover exactly on Tansu: one record per producer
#: batch, since Tansu reports a partition's end offset as its last batch's base offset + 1.
TANSU_EXACT_OFFSETS = {"CRYPTOTRACE_PRODUCER_MAX_BATCH_BYTES": "1"}


# --------------------------------------------------------------------------- a throwaway Redis
class RedisServer:
    """A ``redis-server`` subprocess on its own port (memory only), to kill and restart in a test."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", str(self.log_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()  # a crash, not a clean shutdown: what "Redis is down" looks like to a worker
            proc.wait(timeout=10)


def gauge(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in a Prometheus exposition."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def labelled(text: str, name: str) -> dict[str, float]:
    """``name{labels} value`` samples: the label string -> value."""
    return {labels: float(v) for labels, v in re.findall(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", text, re.M)}
