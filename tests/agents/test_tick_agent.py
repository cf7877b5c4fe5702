"""Agent tests: the real tick agent in Faust's test context, memory store, sinks mocked.

Faust's testing guide: run the agent through ``agent.test_context()`` with ``store='memory://'``
and replace everything that leaves the process (here the alerts, dead-letter and re-keyed topics)
with async mocks. The state table is the real Faust table (memory store).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import create_autospec

import orjson
import pytest
from faust.topics import Topic

from app.factory import create_app
from app.processor import partition_for
from app.settings import Settings
from models.pipeline import Pipeline, PipelineConfig
from models.synthetic import Injection, default_profiles, generate

PARTITIONS = 4


def _sink() -> Any:
    # create_autospec checks call signatures against the real Topic (Mock(autospec=...) would not).
    sink = create_autospec(Topic, instance=True, spec_set=True)
    delivered = asyncio.get_running_loop().create_future()  # what awaiting a real send's future gives
    delivered.set_result(None)
    sink.send.return_value = delivered
    return sink


@pytest.fixture
async def app_and_processor(tmp_path: Any) -> AsyncIterator[tuple[Any, Any]]:
    # test_context delivers one event at a time and waits for it, so each put costs the batch
    # flush wait: 1 ms instead of the default 50 (the result does not depend on batch boundaries).
    settings = Settings(store="memory://", data_dir=tmp_path, model_dir=tmp_path / "no-models",
                        topic_partitions=PARTITIONS, batch_within_s=0.001)
    app = create_app(settings, "kafka://127.0.0.1:1", bundle=None, partitions=PARTITIONS)
    app.loop = asyncio.get_running_loop()
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    proc = app.cryptotrace
    proc.alerts_topic, proc.dlq_topic, proc.keyed_topic = _sink(), _sink(), _sink()
    yield app, proc


def _agent(app: Any) -> Any:
    return app.agents["cryptotrace.process_ticks"]


def _pump_ticks() -> tuple[list[dict[str, Any]], Any]:
    profiles = [p for p in default_profiles(4, seed=3) if not p.liquid][:1]
    start = 1_700_000_000_000
    batch, labels = generate(profiles, start_ms=start, duration_s=9000, seed=3,
                             injections=[Injection("pump_and_dump", profiles[0].symbol, start + 7_200_000)])
    return list(batch.records()), labels[0]


async def _put_all(agent: Any, records: list[dict[str, Any]], topic: str = "ticks") -> None:
    # Ticks keyed by symbol land on their symbol's partition, as a keyed producer would put them.
    async with agent.test_context() as ctx:
        for rec in records:
            await ctx.put(value=orjson.dumps(rec), key=rec["symbol"].encode(),
                          partition=partition_for(rec["symbol"], PARTITIONS))
        # take_events flushes a partial batch after batch_within_s; give it time to drain.
        await asyncio.sleep(0.3)


async def test_pump_alert_is_sent_with_explanation_and_state_written(app_and_processor: Any) -> None:
    app, proc = app_and_processor
    records, label = _pump_ticks()
    proc.partitions_of = lambda topic: PARTITIONS
    await _put_all(_agent(app), records)

    sent = [call.kwargs for call in proc.alerts_topic.send.await_args_list]
    assert sent, "the pump raised no alert"
    alerts = [orjson.loads(kw["value"]) for kw in sent]
    assert all(kw["key"] == a["symbol"] for kw, a in zip(sent, alerts, strict=True))
    in_window = [a for a in alerts if a["symbol"] == label.symbol and label.start_ms <= a["event_time"] <= label.end_ms]
    assert in_window and in_window[0]["top_features"] and in_window[0]["detectors"]["statistical"]["vote"]

    # The agent's output equals the pure pipeline's on the same ticks (the agent adds no logic).
    from models.ticks import tick_from_dict

    expected = Pipeline(PipelineConfig()).process({}, [tick_from_dict(r) for r in records]).alerts
    assert [a["alert_id"] for a in alerts] == [a.alert_id for a in expected]

    state = orjson.loads(proc.table[label.symbol])
    assert state["ticks"] == len(records)
    assert state["last_alert_id"] == alerts[-1]["alert_id"]
    proc.dlq_topic.send.assert_not_awaited()


async def test_bad_records_go_to_the_dead_letter_topic_and_do_not_touch_state(app_and_processor: Any) -> None:
    app, proc = app_and_processor
    proc.partitions_of = lambda topic: PARTITIONS
    good = {"symbol": "BTCUSDT", "price": 100.0, "quantity": 1.0, "timestamp": 1_700_000_000_000}
    part = partition_for("BTCUSDT", PARTITIONS)
    bad = [b"{not json", orjson.dumps({**good, "price": -1}), orjson.dumps({**good, "venue": "x"}),
           orjson.dumps({**good, "timestamp": 1_700_000_000})]
    async with _agent(app).test_context() as ctx:
        await ctx.put(value=orjson.dumps(good), key=b"BTCUSDT", partition=part)
        for raw in bad:
            await ctx.put(value=raw, key=b"BTCUSDT", partition=part)
        await ctx.put(value=orjson.dumps({**good, "timestamp": good["timestamp"] + 1}), key=b"BTCUSDT",
                      partition=part)
        await asyncio.sleep(0.3)
    reasons = [orjson.loads(c.kwargs["value"])["reason"] for c in proc.dlq_topic.send.await_args_list]
    assert reasons == ["malformed_json", "not_positive", "unknown_field", "bad_timestamp"]
    assert orjson.loads(proc.table["BTCUSDT"])["ticks"] == 2


async def test_tick_on_the_wrong_partition_is_rekeyed_not_processed(app_and_processor: Any) -> None:
    app, proc = app_and_processor
    proc.partitions_of = lambda topic: PARTITIONS
    tick = {"symbol": "ETHUSDT", "price": 10.0, "quantity": 1.0, "timestamp": 1_700_000_000_000}
    wrong = (partition_for("ETHUSDT", PARTITIONS) + 1) % PARTITIONS
    async with _agent(app).test_context() as ctx:
        await ctx.put(value=orjson.dumps(tick), key=None, partition=wrong)
        await asyncio.sleep(0.3)
    proc.keyed_topic.send.assert_awaited_once()
    assert proc.keyed_topic.send.await_args.kwargs["key"] == "ETHUSDT"
    assert proc.table.get("ETHUSDT") is None
