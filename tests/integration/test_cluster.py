"""Two workers on one machine: shared partitions, standbys, fail-over, rejoin, routed web views.

One scenario (module fixture), three phases of one seeded market (8 symbols over 4 partitions,
two pumps), input produced only once the group has settled so that who processes what is
known:

1. workers A and B split the partitions and both process; every symbol view gives the same
   answer from either worker (the non-owner forwards to the owner);
2. B leaves (SIGTERM): A takes over B's partitions (from its standby copies) and goes on;
3. B comes back with its old data directory: the partitions are split again and B processes.

Correctness is checked against the pure pipeline run in-process over the whole stream: the
alert ids, and each symbol's tick count, score, indicators and Bollinger bands.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from app.broker import EmbeddedBroker
from app.processor import partition_for
from app.summary import summary_of
from models.pipeline import Pipeline
from models.ticks import tick_from_dict

from ._support import (
    PARTITIONS,
    TANSU_EXACT_OFFSETS,
    Workers,
    make_names,
    produce_keyed,
    read_json,
    total_processed,
    wait_assigned,
)
from .test_worker import T0, H, Market, Run, market, reference_alerts, worker_pipeline_config

pytestmark = pytest.mark.integration

COMPARED = ("symbol", "ticks", "last_price", "last_event_ms", "score", "severity", "alert_state", "last_alert_ms",
            "last_alert_id", "alerts", "threshold", "symbol_threshold", "model_version", "indicators", "bands",
            "members")


def reference_summaries(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each symbol's summary after ``records``, from the pure pipeline (statistical layer, like the workers)."""
    config = worker_pipeline_config()
    snaps: dict[str, Any] = {}
    result = Pipeline(config, None).process(snaps, [tick_from_dict(r) for r in records])
    last_score = {}
    for rec, score in zip(records, result.scores, strict=True):
        last_score[rec["symbol"]] = score
    return {
        s: summary_of(snap, members={"statistical": last_score[s]}, threshold=config.alert_threshold,
                      cooldown_s=config.cooldown_s, model_version="stat-only", owner="")
        for s, snap in snaps.items()
    }


def q(symbol: str) -> str:
    return urllib.parse.quote(symbol, safe="")


def views(w: Any, symbols: list[str]) -> dict[str, Any]:
    """/symbols/{s} and /tables/symbol-state/{s} of every symbol, as worker ``w`` answers them."""
    out: dict[str, Any] = {}
    for s in symbols:
        out[s] = w.get(f"/symbols/{q(s)}")
        out["table:" + s] = w.get(f"/tables/symbol-state/{q(s)}")
    return out


@pytest.fixture(scope="module")
def cluster_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    data: Market = market(1.75, [(0, 1 * H), (1, 3 * H // 2)], n_symbols=8)
    cut1, cut2 = T0 + 45 * 60_000, T0 + 75 * 60_000
    phases = [[r for r in data.records if lo <= r["timestamp"] < hi] for lo, hi in
              ((0, cut1), (cut1, cut2), (cut2, 2**62))]
    names = make_names("cluster")
    names.create_topics(broker)
    ws = Workers(broker, names, tmp_path_factory.mktemp("cluster"))
    run = Run(names, data, ws.logs, {"phases": phases})
    info = run.info
    symbols = sorted(data.counts())
    try:
        a, b = ws.start("worker-a", **TANSU_EXACT_OFFSETS), ws.start("worker-b", **TANSU_EXACT_OFFSETS)
        a.wait_ready(), b.wait_ready()
        info["split1"] = wait_assigned([a, b], names.ticks)
        info["cluster1"] = {w.base_url: w.get("/cluster")[1] for w in (a, b)}
        produce_keyed(broker, names.ticks, phases[0])
        a.wait_symbol_ticks(data.counts(phases[0]))
        info["processed1"] = {w.base_url: w.counters().get("ticks_processed", 0.0) for w in (a, b)}
        info["total1"] = total_processed([a, b])
        info["views1"] = {w.base_url: views(w, symbols) for w in (a, b)}
        info["symbols1"] = {w.base_url: w.get("/symbols") for w in (a, b)}

        info["b_exit"] = b.stop()  # B leaves; A must own everything and carry on
        info["split2"] = wait_assigned([a], names.ticks)
        produce_keyed(broker, names.ticks, phases[1])
        info["a_after_leave"] = a.wait_symbol_ticks(data.counts(phases[0] + phases[1]))
        info["views2"] = {a.base_url: views(a, symbols)}

        b2 = ws.start("worker-b-again", data_dir=b.data_dir, **TANSU_EXACT_OFFSETS)  # B comes back with its old RocksDB
        b2.wait_ready()
        info["split3"] = wait_assigned([a, b2], names.ticks)
        produce_keyed(broker, names.ticks, phases[2])
        info["final_symbols"] = a.wait_symbol_ticks(data.counts())
        info["b2_processed"] = b2.counters().get("ticks_processed", 0.0)
        info["views3"] = {w.base_url: views(w, symbols) for w in (a, b2)}
        info["alerts"] = read_json(broker, names.alerts)
        info["urls"] = {"a": a.base_url, "b": b.base_url, "b2": b2.base_url}
        yield run
    finally:
        ws.stop_all()


def owner_of(symbol: str, split: dict[str, list[int]]) -> str:
    part = partition_for(symbol, PARTITIONS)
    (owner,) = [url for url, parts in split.items() if part in parts]
    return owner


def test_both_workers_process_with_standbys(cluster_run: Run) -> None:
    info = cluster_run.info
    assert info["total1"] == len(info["phases"][0])
    assert all(n > 0 for n in info["processed1"].values()), info["processed1"]
    for url, body in info["cluster1"].items():
        # Standby replicas: each worker follows the changelog of the other's state partitions.
        state_topic = next(t for t in body["active"] if t.endswith("symbol-state-changelog"))
        assert body["standby"].get(state_topic), f"{url} keeps no standby copy: {body}"
        assert set(body["standby"][state_topic]).isdisjoint(body["active"][state_topic])


def test_either_worker_answers_with_the_owners_data(cluster_run: Run) -> None:
    info, data = cluster_run.info, cluster_run.data
    (va, vb) = info["views1"].values()
    counts = data.counts(info["phases"][0])
    expected = reference_summaries(info["phases"][0])
    for s in counts:
        assert va[s] == vb[s], f"{s}: workers disagree"
        status, body = va[s]
        assert status == 200
        assert body["owner"] == body["served_by"] == owner_of(s, info["split1"])
        assert {k: body[k] for k in COMPARED} == {k: expected[s][k] for k in COMPARED}
        assert va["table:" + s] == vb["table:" + s] and va["table:" + s][1]["value"]["ticks"] == counts[s]
    for status, body in info["symbols1"].values():  # no Redis here: every worker is asked for its part
        assert status == 200 and body["source"] == "cluster" and not body["unreachable"]
        assert {r["symbol"]: r["ticks"] for r in body["symbols"]} == counts


def test_leaving_worker_state_moves_and_stays_correct(cluster_run: Run) -> None:
    info, data = cluster_run.info, cluster_run.data
    assert info["b_exit"] == 0
    assert info["split2"] == {info["urls"]["a"]: list(range(PARTITIONS))}
    records = info["phases"][0] + info["phases"][1]
    assert info["a_after_leave"] == data.counts(records)
    expected = reference_summaries(records)
    moved = [s for s in data.counts() if owner_of(s, info["split1"]) == info["urls"]["b"]]
    assert moved, "worker B owned no symbol: the scenario does not test a takeover"
    for s in data.counts():
        status, body = info["views2"][info["urls"]["a"]][s]
        assert status == 200 and body["owner"] == info["urls"]["a"]
        assert {k: body[k] for k in COMPARED} == {k: expected[s][k] for k in COMPARED}, s


def test_rejoining_worker_gets_work_again(cluster_run: Run) -> None:
    info, data = cluster_run.info, cluster_run.data
    assert info["b2_processed"] > 0, "worker B did not process after it came back"
    assert info["final_symbols"] == data.counts()
    expected = reference_summaries(data.records)
    (va, vb) = info["views3"].values()
    for s in data.counts():
        assert va[s] == vb[s]
        assert {k: va[s][1][k] for k in COMPARED} == {k: expected[s][k] for k in COMPARED}, s


def test_cluster_neither_loses_nor_repeats_alerts(cluster_run: Run) -> None:
    alerts = cluster_run.info["alerts"]
    ids = [a["alert_id"] for a in alerts]
    reference = {a["alert_id"] for a in reference_alerts(cluster_run.data.records)}
    assert reference, "the scenario raised no alert"
    assert len(ids) == len(set(ids)), "an alert was repeated across the fail-over"
    assert set(ids) == reference
