"""End-to-end tests of the worker: Kafka protocol (embedded Tansu), real subprocess, real RocksDB.

Data is seeded synthetic ticks, so every expected number (ticks per symbol, forwarded ticks,
alert ids) is computed from the data itself; wall-clock time only bounds the waits. Input is
produced before a worker starts, so each run sees the same backlog.

The larger scenarios run once per module (a fixture) and several tests read what they left
behind; the exactly-once checks are separate tests, so a regression there is told apart from
a detection or recovery problem. They guard two bugs found by this suite: records lost when the
processor overwrote ``Stream.current_event`` under ``take_events``, and recovered state dropped
when a table read looked in the partition DB of a stale current event.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.broker import EmbeddedBroker
from app.factory import pipeline_config
from app.processor import partition_for
from app.settings import Settings
from models.pipeline import Pipeline, PipelineConfig
from models.synthetic import Injection, Label, TickBatch, default_profiles, generate
from models.ticks import tick_from_dict

from ._support import PARTITIONS, Names, Raw, Workers, make_names, produce_keyed, produce_raw, read_json

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
H = 3_600_000
SEED = 11
SEVERITIES = {"low", "medium", "high", "critical"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")

# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Market:
    batch: TickBatch
    labels: list[Label]
    records: list[dict[str, Any]]

    def counts(self, records: list[dict[str, Any]] | None = None) -> dict[str, int]:
        return dict(Counter(r["symbol"] for r in (self.records if records is None else records)))


def market(hours: float, pumps: list[tuple[int, int]], n_symbols: int = 4) -> Market:
    """Seeded ticks of ``n_symbols``: one liquid USDT pair, the rest illiquid BTC pairs.

    ``pumps`` = (index into the illiquid symbols, start in ms after T0) of each pump-and-dump.
    """
    profiles = default_profiles(n_symbols, seed=SEED, illiquid_fraction=(n_symbols - 1) / n_symbols)
    illiquid = [p.symbol for p in profiles if not p.liquid]
    injections = [Injection("pump_and_dump", illiquid[k], T0 + at) for k, at in pumps]
    batch, labels = generate(profiles, start_ms=T0, duration_s=hours * 3600, injections=injections, seed=SEED)
    return Market(batch, labels, list(batch.records()))


def worker_pipeline_config() -> PipelineConfig:
    """The detection settings of a worker without CRYPTOTRACE_* overrides (the workers here)."""
    config = pipeline_config(Settings.model_construct())  # the declared defaults, no environment
    assert config == PipelineConfig(), "worker defaults differ from PipelineConfig(): update the reference"
    return config


def reference_alerts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same stream through the pure pipeline in-process (no model bundle, like the workers)."""
    result = Pipeline(worker_pipeline_config(), None).process({}, [tick_from_dict(r) for r in records])
    return [orjson.loads(orjson.dumps(a.to_dict())) for a in result.alerts]


def check_alert_record(alert: dict[str, Any]) -> None:
    assert HEX32.match(alert["alert_id"]), alert["alert_id"]
    assert isinstance(alert["symbol"], str) and alert["symbol"]
    assert isinstance(alert["event_time"], int) and not isinstance(alert["event_time"], bool)
    threshold = alert["threshold"]
    assert threshold == worker_pipeline_config().alert_threshold
    assert 0.0 <= alert["score"] <= 1.0 and alert["score"] >= threshold, alert["score"]
    assert alert["severity"] in SEVERITIES, alert["severity"]
    detectors = alert["detectors"]
    assert isinstance(detectors, dict) and detectors, detectors
    for name, member in detectors.items():
        assert set(member) == {"score", "vote"}, (name, member)
        assert 0.0 <= member["score"] <= 1.0 and isinstance(member["vote"], bool), (name, member)
    assert alert["top_features"], alert
    for feat in alert["top_features"]:
        assert {"feature", "value", "z"} <= set(feat), feat
        assert isinstance(feat["feature"], str) and isinstance(feat["z"], (int, float)), feat
    assert alert["model_version"] == "stat-only"  # no artifact in the worker's model dir


def rejected_metric(text: str) -> dict[str, float]:
    """``cryptotrace_ticks_rejected_total{reason=...}`` samples of a Prometheus exposition."""
    pattern = re.compile(r'^cryptotrace_ticks_rejected_total\{reason="([^"]+)"\} (\S+)$', re.M)
    return {reason: float(value) for reason, value in pattern.findall(text)}


@dataclass
class Run:
    """What one scenario left behind; ``logs`` are attached to the report of a failing test."""

    names: Names
    data: Market
    logs: list[tuple[str, Path]]
    info: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def scenario_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scenarios")


# --------------------------------------------------------------------------- 1. pump -> explained alert
@pytest.fixture(scope="module")
def pump_run(broker: EmbeddedBroker, scenario_root: Path) -> Iterator[Run]:
    """4 symbols, 2.5 h of event time, a pump on an illiquid pair at 2 h; one worker."""
    data = market(2.5, [(0, 2 * H)])
    names = make_names("pump")
    names.create_topics(broker)
    assert produce_keyed(broker, names.ticks, data.records) == len(data.records)
    ws = Workers(broker, names, scenario_root / "pump")
    run = Run(names, data, ws.logs)
    try:
        w = ws.start()
        run.info["ready_s"] = w.wait_ready()
        run.info["counters"] = w.wait_processed(len(data.records))
        run.info["stats"] = w.stats()
        run.info["symbols"] = w.symbol_ticks(data.counts())
        run.info["alerts"] = read_json(broker, names.alerts)
        pumped = data.labels[0].symbol
        run.info["view"] = w.get("/alerts?" + urllib.parse.urlencode({"symbol": pumped}))
        run.info["web"] = {
            path: w.get(path)
            for path in ("/health", "/ready", "/models", "/alerts?severity=nonexistent", "/alerts?since=x",
                         f"/alerts?until={T0}", f"/symbols/{urllib.parse.quote(pumped, safe='')}")
        }
        # No CRYPTOTRACE_ADMIN_TOKEN: the mutating endpoints are switched off, whatever is sent.
        run.info["admin_off"] = [w.post("/thresholds", {"alert_threshold": 0.9}, token="t" * 20),
                                 w.post("/models/reload", {})]
        yield run
    finally:
        ws.stop_all()


def test_pump_gives_explained_alert(pump_run: Run) -> None:
    (label,) = pump_run.data.labels
    alerts = pump_run.info["alerts"]
    for alert in alerts:
        check_alert_record(alert)
    ids = [a["alert_id"] for a in alerts]
    assert len(ids) == len(set(ids)), "duplicate alert ids on the alerts topic"
    hits = [a for a in alerts if a["symbol"] == label.symbol and label.start_ms <= a["event_time"] <= label.end_ms]
    assert hits, f"no alert for {label} among {[(a['symbol'], a['event_time']) for a in alerts]}"
    assert pump_run.info["stats"]["model_version"] == "stat-only"
    assert pump_run.info["stats"]["ticks_rejected"] == {}
    assert pump_run.info["stats"]["ticks_forwarded"] == 0  # keyed by symbol: nothing to re-key
    # The web view lists the same recent alerts of the symbol.
    status, body = pump_run.info["view"]
    assert status == 200
    assert {a["alert_id"] for a in body["alerts"]} == {a["alert_id"] for a in alerts if a["symbol"] == label.symbol}


def test_operational_views(pump_run: Run) -> None:
    web = pump_run.info["web"]
    (label,) = pump_run.data.labels
    assert web["/health"] == (200, {"status": "ok"})
    assert web["/ready"] == (200, {"ready": True})
    status, models = web["/models"]
    assert status == 200 and models["model_version"] == "stat-only" and models["alert_threshold"] == 0.5
    assert web["/alerts?severity=nonexistent"] == (200, {"alerts": []})
    assert web["/alerts?since=x"][0] == 400
    assert web[f"/alerts?until={T0}"] == (200, {"alerts": []})  # every alert is later than the first tick
    status, snap = web[f"/symbols/{urllib.parse.quote(label.symbol, safe='')}"]
    assert status == 200 and snap["symbol"] == label.symbol
    assert snap["ticks"] == pump_run.data.counts()[label.symbol]
    for status, body in pump_run.info["admin_off"]:
        assert status == 403 and "CRYPTOTRACE_ADMIN_TOKEN" in body["error"], (status, body)


def test_pump_stream_processed_exactly_once(pump_run: Run) -> None:
    """Every tick applied once (none lost, none skipped as redelivered), alerts as the pure pipeline's."""
    data = pump_run.data
    counters = pump_run.info["counters"]
    assert counters.get("ticks_redelivered", 0.0) == 0.0, f"ticks wrongly skipped as redelivered: {counters}"
    assert counters["ticks_processed"] == len(data.records)
    assert pump_run.info["symbols"] == data.counts()
    # And then the worker says exactly what the pure pipeline says about the same stream.
    expected = sorted(reference_alerts(data.records), key=lambda a: a["alert_id"])
    assert sorted(pump_run.info["alerts"], key=lambda a: a["alert_id"]) == expected


# --------------------------------------------------------------------------- 2. restart from the changelog
@pytest.fixture(scope="module")
def restart_run(broker: EmbeddedBroker, scenario_root: Path) -> Iterator[Run]:
    """Worker A on the first half, RocksDB deleted, worker B (same app) recovers and takes the second."""
    data = market(2.5, [(1, 1 * H), (0, 2 * H)])
    split_ms = T0 + 3 * H // 2
    half1 = [r for r in data.records if r["timestamp"] < split_ms]
    half2 = [r for r in data.records if r["timestamp"] >= split_ms]
    names = make_names("restart")
    names.create_topics(broker)
    ws = Workers(broker, names, scenario_root / "restart")
    run = Run(names, data, ws.logs, {"split_ms": split_ms, "half1": half1, "half2": half2})
    try:
        produce_keyed(broker, names.ticks, half1)
        a = ws.start("worker-a")
        a.wait_ready()
        run.info["a_counters"] = a.wait_processed(len(half1))
        run.info["a_symbols"] = a.symbol_ticks(data.counts())
        run.info["a_exit"] = a.stop()
        run.info["alerts_after_a"] = read_json(broker, names.alerts)
        shutil.rmtree(a.data_dir)
        run.info["a_data_deleted"] = not a.data_dir.exists()

        b = ws.start("worker-b")  # same app id and topics, an empty data dir
        run.info["b_fresh_dir"] = b.data_dir != a.data_dir and not b.data_dir.exists()
        b.wait_ready()
        # Recovery from the changelog, before any new tick: poll until B shows A's state.
        run.info["b_recovered"] = b.wait_symbol_ticks(run.info["a_symbols"])
        run.info["b_counters_before"] = b.counters()
        produce_keyed(broker, names.ticks, half2)
        run.info["b_counters"] = b.wait_processed(len(half2))
        run.info["b_symbols"] = b.symbol_ticks(data.counts())
        run.info["alerts"] = read_json(broker, names.alerts)
        yield run
    finally:
        ws.stop_all()


def test_restart_recovers_state_from_changelog(restart_run: Run) -> None:
    info = restart_run.info
    assert info["a_exit"] == 0, "worker A did not exit cleanly on SIGTERM"
    assert info["a_data_deleted"] and info["b_fresh_dir"]
    a_symbols = info["a_symbols"]
    assert set(a_symbols) == set(restart_run.data.counts()) and min(a_symbols.values()) > 0, a_symbols
    assert info["b_recovered"] == a_symbols, "worker B's table does not show worker A's state"
    assert info["b_counters_before"].get("ticks_processed", 0.0) == 0.0, "worker B applied ticks of half 1 again"


def test_restart_does_not_repeat_alerts(restart_run: Run) -> None:
    info = restart_run.info
    before, after = info["alerts_after_a"], info["alerts"]
    assert before, "no alert in the first half: the scenario does not test alerts across the restart"
    ids = [a["alert_id"] for a in after]
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    assert not repeated, f"alerts repeated after the restart: {repeated}"
    assert {a["alert_id"] for a in before} <= set(ids)
    new = [a for a in after if a["alert_id"] not in {x["alert_id"] for x in before}]
    assert new and all(a["event_time"] >= info["split_ms"] for a in new), new
    second = restart_run.data.labels[1]
    assert any(a["symbol"] == second.symbol and second.start_ms <= a["event_time"] <= second.end_ms for a in new)


def test_restart_continues_from_recovered_state(restart_run: Run) -> None:
    """Worker B folds the second half into the state it recovered (not into a fresh one)."""
    info = restart_run.info
    half2 = restart_run.data.counts(info["half2"])
    expected = {s: n + half2.get(s, 0) for s, n in info["a_symbols"].items()}
    assert info["b_symbols"] == expected, "worker B dropped recovered state (counts restarted from 0)"


def test_restart_neither_loses_nor_repeats(restart_run: Run) -> None:
    """Across the restart every tick is applied once and the alerts are those of one uninterrupted run."""
    info, data = restart_run.info, restart_run.data
    assert info["a_symbols"] == data.counts(info["half1"]), "worker A lost ticks"
    assert info["b_symbols"] == data.counts(), "ticks lost, applied twice or state dropped across the restart"
    assert info["b_counters"]["ticks_processed"] == len(info["half2"])
    reference = {a["alert_id"] for a in reference_alerts(data.records)}
    ids = [a["alert_id"] for a in info["alerts"]]
    assert len(ids) == len(set(ids)) and set(ids) == reference, (
        f"missing {sorted(reference - set(ids))}, unexpected {sorted(set(ids) - reference)}"
    )


# --------------------------------------------------------------------------- 3. bad input -> DLQ
SYM = "DLQTEST"


def _tick(i: int, **override: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"symbol": SYM, "price": round(100.0 + i * 0.01, 2), "quantity": 1.0 + i % 3,
                           "timestamp": T0 + i * 1000, "side": "buy" if i % 2 else "sell"}
    rec.update(override)
    return rec


def test_bad_input_goes_to_dlq(broker: EmbeddedBroker, names: Names, workers: Workers) -> None:
    bad: list[tuple[str, bytes | None]] = [
        ("malformed_json", b'{"symbol":"DLQTEST","price":101.5,"quantity":'),
        # NaN is not JSON (RFC 8259): orjson rejects the whole record, so the reason is
        # malformed_json (not_finite is reachable only from Python callers).
        ("malformed_json", b'{"symbol":"DLQTEST","price":NaN,"quantity":1.0,"timestamp":%d}' % (T0 + 500)),
        ("not_positive", orjson.dumps(_tick(0, quantity=-2.5))),
        ("unknown_field", orjson.dumps(_tick(0, venue="binance"))),
        ("bad_timestamp", orjson.dumps(_tick(0, timestamp=T0 // 1000))),  # seconds, not ms
        ("missing_field", b'{"symbol":"DLQTEST","price":100.0,"quantity":1.0}'),
        ("not_an_object", b"[42]"),
        ("empty", None),  # a tombstone
    ]
    key = SYM.encode()
    items: list[Raw] = []
    for i in range(40):
        items.append((key, orjson.dumps(_tick(i)), None))
        if i % 5 == 2:  # one bad record after every fifth valid tick
            items.append((key, bad[i // 5][1], None))
    valid = 40
    expected = {reason: float(n) for reason, n in Counter(reason for reason, _ in bad).items()}
    names.create_topics(broker)
    produce_raw(broker, names.ticks, items)
    worker = workers.start()
    worker.wait_ready()

    assert worker.wait_processed(valid)["ticks_processed"] == valid
    dlq = read_json(broker, names.dlq)
    assert Counter(r["reason"] for r in dlq) == Counter({k: int(v) for k, v in expected.items()}), dlq
    raw_reason = {(v or b"").decode(): reason for reason, v in bad}
    for rec in dlq:
        assert rec["topic"] == names.ticks and isinstance(rec["offset"], int) and isinstance(rec["detail"], str)
        assert raw_reason[rec["raw"]] == rec["reason"], rec
    assert worker.alive()
    assert worker.stats()["ticks_rejected"] == expected
    assert rejected_metric(worker.metrics()) == expected
    status, state = worker.symbol(SYM)
    assert status == 200 and state["ticks"] == valid
    assert state["last_price"] == _tick(valid - 1)["price"] and state["last_event_ms"] == _tick(valid - 1)["timestamp"]


# --------------------------------------------------------------------------- 4. unkeyed producers
@pytest.fixture(scope="module")
def unkeyed_run(broker: EmbeddedBroker, scenario_root: Path) -> Iterator[Run]:
    """3 symbols, 30 min, no keys, records spread round-robin over the partitions; one worker."""
    data = market(0.5, [], n_symbols=3)
    names = make_names("unkeyed")
    names.create_topics(broker)
    produce_raw(broker, names.ticks, [(None, orjson.dumps(r), i % PARTITIONS) for i, r in enumerate(data.records)])
    ws = Workers(broker, names, scenario_root / "unkeyed")
    run = Run(names, data, ws.logs)
    run.info["expected_forwarded"] = sum(
        1 for i, r in enumerate(data.records) if partition_for(r["symbol"], PARTITIONS) != i % PARTITIONS
    )
    try:
        # Round-robin producers scramble each symbol's order (re-keyed ticks arrive far behind the
        # ones already on their home partition): such a deployment raises the lateness bound.
        w = ws.start(CRYPTOTRACE_MAX_LATENESS_MS=str(86_400_000))
        w.wait_ready()
        run.info["counters"] = w.wait_processed(len(data.records))
        run.info["stats"] = w.stats()
        run.info["symbols"] = w.symbol_ticks(data.counts())
        yield run
    finally:
        ws.stop_all()


def test_unkeyed_ticks_are_rekeyed(unkeyed_run: Run) -> None:
    info = unkeyed_run.info
    assert info["expected_forwarded"] > 0
    assert 0 < info["stats"]["ticks_forwarded"] <= info["expected_forwarded"]
    assert info["stats"]["ticks_rejected"] == {}
    # Every symbol has one state, on the partition it hashes to (the view reads the local table).
    assert min(info["symbols"].values()) > 0, info["symbols"]


def test_unkeyed_ticks_processed_exactly_once(unkeyed_run: Run) -> None:
    """Re-keyed and local ticks are each applied once; every foreign tick is forwarded once."""
    info, data = unkeyed_run.info, unkeyed_run.data
    assert info["counters"].get("ticks_redelivered", 0.0) == 0.0, info["counters"]
    assert info["symbols"] == data.counts()
    assert info["counters"]["ticks_processed"] == len(data.records)
    assert info["stats"]["ticks_forwarded"] == info["expected_forwarded"]


# --------------------------------------------------------------------------- 5. batched records
def test_batched_records_count_each_tick(broker: EmbeddedBroker, names: Names, workers: Workers) -> None:
    key = SYM.encode()
    home = partition_for(SYM, PARTITIONS)
    ticks = [_tick(i) for i in range(56)]
    items: list[Raw] = [(key, orjson.dumps(ticks[k:k + 5]), None) for k in range(0, 40, 5)]  # 8 arrays of 5
    items.append((None, orjson.dumps(ticks[40:50]), (home + 1) % PARTITIONS))  # an array on a foreign partition
    items.append((key, orjson.dumps(ticks[50]), None))  # a plain single tick
    mixed = [*ticks[51:55], {**ticks[55], "quantity": 0}]  # 4 good ticks and a bad one in one array
    items.append((key, orjson.dumps(mixed), None))
    valid = 40 + 10 + 1 + 4
    names.create_topics(broker)
    produce_raw(broker, names.ticks, items)
    # The foreign array comes back through the re-key topic after ticks 50-55: behind them in event time.
    worker = workers.start(CRYPTOTRACE_MAX_LATENESS_MS=str(86_400_000))
    worker.wait_ready()

    counters = worker.wait_processed(valid)
    assert counters["ticks_processed"] == valid
    assert worker.symbol_ticks([SYM]) == {SYM: valid}
    stats = worker.stats()
    assert stats["ticks_forwarded"] == 10  # the foreign array's ticks, re-keyed one by one
    assert stats["ticks_rejected"] == {"not_positive": 1.0}
    (dead,) = read_json(broker, names.dlq)
    assert dead["reason"] == "not_positive" and orjson.loads(dead["raw"]) == mixed[-1]
