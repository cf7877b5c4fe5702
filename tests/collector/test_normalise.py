"""Unit tests of the pure layer: each exchange's normaliser, gaps, connection planning, backoff.

Frames are written in each exchange's documented format (``frames/*.jsonl``: one text frame per
line, with the expected outcome hand-written next to them in ``*.expected.json``).
"""

from __future__ import annotations

import doctest
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import app.collector.connection
import app.collector.formats
import app.collector.gaps
import app.collector.metrics
import app.collector.service
from app.codec import decode_ticks
from app.collector.binance import STREAMS_PER_MESSAGE
from app.collector.connection import Backoff
from app.collector.exchanges import EXCHANGES, get_format
from app.collector.formats import iso_to_ms
from app.collector.gaps import DUPLICATE, GapTracker
from app.collector.handler import FeedHandler
from app.collector.metrics import CollectorMetrics
from app.collector.producer import encode_ticks
from app.collector.service import Collector, CollectorConfig, plan_connections
from models.ticks import Tick, tick_from_dict

from ._support import EXCHANGE_NAMES, T0, expected, recorded, trade_frame


def handle_all(exchange: str, frames: list[str], clock: Any = None) -> tuple[list[Tick], CollectorMetrics]:
    metrics = CollectorMetrics.create(process=False)
    out: list[Tick] = []
    handler = FeedHandler(get_format(exchange), out.extend, metrics, **({"clock": clock} if clock else {}))
    for f in frames:
        handler.handle(f)
    return out, metrics


def by_label(metrics: CollectorMetrics, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in metrics.registry.collect():
        for s in metric.samples:
            if s.name == f"cryptotrace_collector_{name}" and s.value:
                out[s.labels[label]] = s.value
    return out


# --------------------------------------------------------------------------- recorded streams
@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_recorded_stream_normalises_exactly(exchange: str) -> None:
    ticks, metrics = handle_all(exchange, recorded(exchange))
    exp = expected(exchange)
    assert [t.to_dict() for t in ticks] == exp["ticks"]
    assert by_label(metrics, "invalid_frames_total", "reason") == exp["invalid"]
    assert by_label(metrics, "frame_kinds_total", "kind") == exp["kinds"]
    assert metrics.value("trade_id_gaps_total", exchange=exchange) == exp["gaps"]
    assert metrics.value("trades_missing_total", exchange=exchange) == exp["missing"]
    assert metrics.value("duplicate_trades_total", exchange=exchange) == exp["duplicates"]
    assert metrics.value("frames_total", exchange=exchange) == len(recorded(exchange))


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_produced_records_decode_in_the_worker_to_the_same_ticks(exchange: str) -> None:
    ticks, _ = handle_all(exchange, recorded(exchange))
    decoded, rejected = decode_ticks(encode_ticks(ticks))
    assert rejected == [] and decoded == ticks


# --------------------------------------------------------------------------- sides and ids
@pytest.mark.parametrize(("taker", "m"), [("sell", True), ("buy", False)])
def test_binance_buyer_is_maker_means_taker_sold(taker: str, m: bool) -> None:
    frame = get_format("binance").parse(trade_frame("binance", "BTCUSDT", 7, T0, taker=taker))
    assert orjson.loads(trade_frame("binance", "BTCUSDT", 7, T0, taker=taker))["data"]["m"] is m
    assert frame.kind == "trades" and frame.trades[0][0].side == taker


@pytest.mark.parametrize(("maker_side", "taker"), [("sell", "buy"), ("buy", "sell")])
def test_coinbase_side_is_the_maker_side(maker_side: str, taker: str) -> None:
    raw = {"type": "match", "trade_id": 1, "product_id": "BTC-USD", "price": "1.5", "size": "2",
           "time": "2026-11-21T10:00:00Z", "side": maker_side}
    (tick, first), = get_format("coinbase").parse(orjson.dumps(raw)).trades
    assert (tick.side, tick.price, tick.quantity, first) == (taker, 1.5, 2.0, 1)


def test_okx_aggregated_trades_cover_count_ids_and_are_no_gap() -> None:
    fmt = get_format("okx")
    raw = trade_frame("okx", "BTC-USDT", 130, T0).replace('"count":"1"', '"count":"3"')
    frame = fmt.parse(raw)
    tick, first = frame.trades[0]
    assert (tick.trade_id, first) == (130, 128)
    gaps = GapTracker()
    assert gaps.check("BTC-USDT", 127, 127) == 0
    assert gaps.check("BTC-USDT", first, 130) == 0  # 128..130 follow 127
    assert gaps.check("BTC-USDT", 133, 133) == 2  # 131, 132 missed


def test_symbol_prefix_names_ticks_by_exchange() -> None:
    frame = get_format("okx", symbol_prefix=True).parse(trade_frame("okx", "BTC-USDT", 1, T0))
    assert frame.trades[0][0].symbol == "okx:BTC-USDT"


def test_lag_is_measured_from_the_exchange_time() -> None:
    _, metrics = handle_all("binance", [trade_frame("binance", "BTCUSDT", 1, T0)], clock=lambda: (T0 + 42) / 1000)
    assert metrics.value("receive_lag_ms_sum", exchange="binance") == pytest.approx(42.0)
    assert metrics.value("receive_lag_ms_bucket", exchange="binance", le="50.0") == 1.0


# --------------------------------------------------------------------------- non-trade and bad frames
@pytest.mark.parametrize(("exchange", "raw", "kind"), [
    ("binance", '{"result":null,"id":3}', "ack"),
    ("binance", '{"error":{"code":2,"msg":"Invalid request"},"id":3}', "error"),
    ("binance", '{"e":"serverShutdown","E":1795300000000}', "reconnect"),
    ("coinbase", '{"type":"heartbeat","sequence":1,"last_trade_id":5,"product_id":"BTC-USD",'
                 '"time":"2026-11-21T10:00:00.000000Z"}', "heartbeat"),
    ("coinbase", '{"type":"subscriptions","channels":[]}', "ack"),
    ("okx", "pong", "pong"),
    ("okx", b"pong", "pong"),
    ("okx", '{"event":"notice","code":"64008","msg":"The connection will soon be closed","connId":"x"}',
     "reconnect"),
    ("okx", '{"event":"channel-conn-count","channel":"trades","connCount":"2","connId":"x"}', "ack"),
])
def test_control_frames_are_classified(exchange: str, raw: str, kind: str) -> None:
    frame = get_format(exchange).parse(raw)
    assert frame.kind == kind and frame.trades == [] and frame.invalid == []


BAD_BINANCE = {"e": "trade", "E": T0, "s": "BTCUSDT", "t": 1, "p": "1.0", "q": "1.0", "T": T0, "m": True}


@pytest.mark.parametrize(("change", "reason"), [
    ({"p": "1,5"}, "bad_number"),
    ({"p": True}, "wrong_type"),
    ({"q": "1e400"}, "not_finite"),
    ({"q": "0"}, "not_positive"),
    ({"T": T0 // 1000}, "bad_timestamp"),  # seconds, not milliseconds
    ({"s": "BTC USDT"}, "bad_symbol"),
    ({"m": "yes"}, "bad_side"),
    ({"t": "x1"}, "wrong_type"),
])
def test_binance_bad_trades_are_rejected_with_a_reason(change: dict[str, Any], reason: str) -> None:
    frame = get_format("binance").parse(orjson.dumps({"stream": "btcusdt@trade", "data": {**BAD_BINANCE, **change}}))
    assert frame.kind == "invalid" and frame.invalid[0][0] == reason


@pytest.mark.parametrize("raw", ["", "[]", "[1,2]", "null", "42", '{"stream":"x","data":[1]}', "\x00\xff"])
def test_binance_garbage_is_invalid(raw: str) -> None:
    assert get_format("binance").parse(raw).kind == "invalid"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=6),
                    max_leaves=20)
FIELDS = {"binance": "estpqTmM", "coinbase": ["type", "trade_id", "product_id", "price", "size", "time", "side"],
          "okx": ["instId", "tradeId", "px", "sz", "side", "ts", "count"]}


def mutated_trade(exchange: str, changes: dict[str, Any]) -> str:
    obj = orjson.loads(trade_frame(exchange, "BTC-USDT" if exchange == "okx" else "BTCUSDT", 1, T0))
    target = obj["data"] if exchange == "binance" else obj["data"][0] if exchange == "okx" else obj
    target.update(changes)
    return json.dumps(obj)  # stdlib: also writes big integers and NaN, as a broken server might


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
@given(data=st.data())
def test_parse_never_raises(exchange: str, data: st.DataObject) -> None:
    raw = data.draw(st.one_of(
        st.text(max_size=200), st.binary(max_size=200), JSON.map(json.dumps),
        st.dictionaries(st.sampled_from(list(FIELDS[exchange])), JSON, max_size=3).map(
            lambda ch: mutated_trade(exchange, ch)),
    ))
    frame = get_format(exchange).parse(raw)
    assert frame.kind in ("trades", "ack", "heartbeat", "pong", "error", "reconnect", "invalid")
    for tick, _ in frame.trades:
        assert tick_from_dict(tick.to_dict()) == tick  # whatever comes out is a valid tick


@pytest.mark.parametrize(("text", "ms"), [
    ("2014-11-07T08:19:27.028459Z", 1_415_348_367_028),
    ("2014-11-07T08:19:27Z", 1_415_348_367_000),
    ("2014-11-07T08:19:27.5Z", 1_415_348_367_500),
    ("2014-11-07T08:19:27.999999999Z", 1_415_348_367_999),
    ("2014-11-07T08:19:27.028+00:00", 1_415_348_367_028),
])
def test_iso_times_to_milliseconds(text: str, ms: int) -> None:
    assert iso_to_ms(text) == ms


@pytest.mark.parametrize("text", ["2014-11-07 08:19:27Z", "2014-13-07T08:19:27Z", "2014-11-07T08:19:27+02:00", 17])
def test_bad_iso_times_are_rejected(text: Any) -> None:
    from models.errors import BadTickError

    with pytest.raises(BadTickError):
        iso_to_ms(text)


# --------------------------------------------------------------------------- subscribe messages
def test_binance_subscribe_uses_lowercase_trade_streams_in_chunks() -> None:
    symbols = [f"S{i}USDT" for i in range(450)]
    msgs = [orjson.loads(m) for m in get_format("binance").subscribe_messages(symbols)]
    assert [m["id"] for m in msgs] == [1, 2, 3]
    assert all(m["method"] == "SUBSCRIBE" and len(m["params"]) <= STREAMS_PER_MESSAGE for m in msgs)
    assert [p for m in msgs for p in m["params"]] == [f"s{i}usdt@trade" for i in range(450)]


def test_coinbase_and_okx_subscribe_messages() -> None:
    (cb,) = [orjson.loads(m) for m in get_format("coinbase").subscribe_messages(["btc-usd", "ETH-USD"])]
    assert cb == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches", "heartbeat"]}
    (ok,) = [orjson.loads(m) for m in get_format("okx").subscribe_messages(["BTC-USDT"])]
    assert ok == {"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}]}
    assert len(get_format("okx").subscribe_messages([f"S{i}-USDT" for i in range(300)])[0]) < 64 * 1024


# --------------------------------------------------------------------------- gaps, planning, backoff
def test_gap_tracker_duplicates_and_renumbering() -> None:
    g = GapTracker(reset_window=1000)
    assert [g.check("X", i, i) for i in (5, 6, 9, 9, 8)] == [0, 0, 2, DUPLICATE, DUPLICATE]
    assert g.check("X", 1, 1) == DUPLICATE  # 8 below: a replay
    g2 = GapTracker(reset_window=1000)
    g2.check("X", 5000, 5000)
    assert g2.check("X", 3, 3) == 0 and g2.last("X") == 3  # far below: renumbered, start over
    assert g2.check("Y", 1, 1) == 0 and len(g2) == 2


@given(n=st.integers(0, 3000), cap=st.integers(1, 1024))
def test_plan_connections_respects_the_cap_and_balances(n: int, cap: int) -> None:
    symbols = [f"s{i}" for i in range(n)]
    groups = plan_connections(symbols + symbols[: n // 3], cap)  # duplicates are dropped
    assert [s for g in groups for s in g] == symbols
    assert len(groups) == -(-n // cap)
    if groups:
        sizes = [len(g) for g in groups]
        assert max(sizes) <= cap and max(sizes) - min(sizes) <= 1


def test_backoff_grows_is_bounded_and_jittered() -> None:
    b, rng = Backoff(base_s=0.5, max_s=30.0, jitter=0.5), random.Random(1)
    for attempt in range(60):
        d = b.delay(attempt, rng)
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= d <= ceiling
    assert len({round(b.delay(3, rng), 6) for _ in range(20)}) > 10  # actually random


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
def test_per_connection_cap_is_enforced(exchange: str) -> None:
    cap = EXCHANGES[exchange].max_per_connection
    ok = Collector(CollectorConfig(exchange, ("A", "B"), per_connection=cap), lambda t: None,
                   CollectorMetrics.create(process=False))
    assert ok.groups == [["A" if exchange != "binance" else "a", "B" if exchange != "binance" else "b"]]
    with pytest.raises(ValueError, match="per_connection"):
        Collector(CollectorConfig(exchange, ("A",), per_connection=cap + 1), lambda t: None,
                  CollectorMetrics.create(process=False))


def test_binance_cap_is_the_documented_1024_streams() -> None:
    assert EXCHANGES["binance"].max_per_connection == 1024
    assert 1 / EXCHANGES["binance"].control_interval_s < 5  # control messages under 5/s


@pytest.mark.parametrize("module", [app.collector.formats, app.collector.gaps, app.collector.connection,
                                    app.collector.service, app.collector.metrics])
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
