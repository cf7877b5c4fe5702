"""Tests of tick validation (models.ticks) and wire decoding (app.codec)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.codec import MAX_RECORD_BYTES, MAX_TICKS_PER_RECORD, decode, decode_ticks, encode
from models.errors import BadTickError
from models.ticks import MAX_SYMBOL_LEN, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, Tick, tick_from_dict

TS = 1_700_000_000_000
GOOD: dict[str, Any] = {"symbol": "BTCUSDT", "price": 50_000.5, "quantity": 0.25, "timestamp": TS}


def reason(raw: Any) -> str:
    with pytest.raises(BadTickError) as exc:
        tick_from_dict(raw)
    assert isinstance(exc.value, ValueError)  # callers may catch ValueError
    return exc.value.reason


# ---------------------------------------------------------------------------
# tick_from_dict: one test per reason code
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [None, [], "BTCUSDT", 3, [GOOD]])
def test_not_an_object(raw: Any) -> None:
    assert reason(raw) == "not_an_object"


@pytest.mark.parametrize("field", ["symbol", "price", "quantity", "timestamp"])
def test_missing_field(field: str) -> None:
    raw = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(BadTickError) as exc:
        tick_from_dict(raw)
    assert exc.value.reason == "missing_field" and exc.value.detail == field


def test_unknown_field() -> None:
    with pytest.raises(BadTickError) as exc:
        tick_from_dict({**GOOD, "venue": "x", "Price": 1})
    assert exc.value.reason == "unknown_field" and exc.value.detail == "Price,venue"


@pytest.mark.parametrize(
    "field,value",
    [
        ("symbol", 123), ("symbol", None), ("symbol", ["BTC"]),
        ("price", "50000"), ("price", None), ("price", True), ("price", False), ("price", [1.0]),
        ("quantity", "1"), ("quantity", True),
        ("timestamp", "1700000000000"), ("timestamp", True), ("timestamp", None),
        ("exchange", 5), ("exchange", True),
        ("trade_id", "7"), ("trade_id", 7.0), ("trade_id", True),
    ],
)  # fmt: skip
def test_wrong_type(field: str, value: Any) -> None:
    assert reason({**GOOD, field: value}) == "wrong_type"


@pytest.mark.parametrize("field", ["price", "quantity"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_not_finite(field: str, value: float) -> None:
    assert reason({**GOOD, field: value}) == "not_finite"


@pytest.mark.parametrize("field", ["price", "quantity"])
@pytest.mark.parametrize("value", [0, 0.0, -0.0, -1, -1e-300])
def test_not_positive(field: str, value: float) -> None:
    assert reason({**GOOD, field: value}) == "not_positive"


@pytest.mark.parametrize(
    "symbol", ["", " BTC", "BTC USDT", "-BTC", "/BTC", "\nBTC", "B" * (MAX_SYMBOL_LEN + 1), "BTC€", "BTC;DROP"]
)
def test_bad_symbol(symbol: str) -> None:
    assert reason({**GOOD, "symbol": symbol}) == "bad_symbol"


def test_the_cache_of_valid_symbols_keeps_bad_ones_out_and_stays_bounded() -> None:
    from models import ticks

    tick_from_dict(GOOD)
    assert GOOD["symbol"] in ticks._VALID_SYMBOLS
    assert reason({**GOOD, "symbol": "BTC USDT"}) == "bad_symbol"  # refused, and not remembered
    assert reason({**GOOD, "symbol": "BTC USDT"}) == "bad_symbol" and "BTC USDT" not in ticks._VALID_SYMBOLS
    ticks._VALID_SYMBOLS.update((f"S{i}", True) for i in range(ticks.MAX_VALID_SYMBOLS))
    fresh = "CACHE-TEST/BTC"  # a symbol no other test validates, so it is not remembered yet
    assert fresh not in ticks._VALID_SYMBOLS
    assert tick_from_dict({**GOOD, "symbol": fresh}).symbol == fresh  # full: cleared, then this one
    assert list(ticks._VALID_SYMBOLS) == [fresh]


def test_symbol_with_trailing_newline_is_rejected() -> None:
    # Accepted today: 'BTCUSDT\n' becomes a separate symbol (state table key, alert symbol).
    assert reason({**GOOD, "symbol": "BTCUSDT\n"}) == "bad_symbol"


@pytest.mark.parametrize(
    "timestamp",
    [
        TS // 1000,  # seconds
        TS * 1000,  # microseconds
        TS * 1_000_000,  # nanoseconds
        MIN_TIMESTAMP_MS - 1,
        MAX_TIMESTAMP_MS + 1,
        0,
        -TS,
        float(TS) + 0.5,  # not whole milliseconds
        math.nan,
        math.inf,
    ],
)
def test_bad_timestamp(timestamp: float) -> None:
    assert reason({**GOOD, "timestamp": timestamp}) == "bad_timestamp"


def test_huge_integer_price_is_a_bad_tick() -> None:
    assert reason({**GOOD, "price": 10**400}) == "not_finite"


@pytest.mark.parametrize("side", ["b", "long", "", "buy ", 1, True, ["buy"]])
def test_bad_side(side: Any) -> None:
    assert reason({**GOOD, "side": side}) == "bad_side"


def test_valid_edge_values() -> None:
    assert tick_from_dict({**GOOD, "timestamp": MIN_TIMESTAMP_MS}).timestamp == MIN_TIMESTAMP_MS
    assert tick_from_dict({**GOOD, "timestamp": MAX_TIMESTAMP_MS}).timestamp == MAX_TIMESTAMP_MS
    t = tick_from_dict({**GOOD, "timestamp": float(TS), "price": 3, "side": "SELL", "symbol": "BRD/BTC"})
    assert (t.timestamp, type(t.timestamp), t.price, type(t.price), t.side) == (TS, int, 3.0, float, "sell")
    assert tick_from_dict({**GOOD, "symbol": "A" * MAX_SYMBOL_LEN}).symbol == "A" * MAX_SYMBOL_LEN
    # Explicit nulls of optional fields are the same as absent ones.
    assert tick_from_dict({**GOOD, "side": None, "exchange": None, "trade_id": None}) == tick_from_dict(GOOD)


symbols = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/:-]{0,39}\Z")
ticks = st.builds(
    Tick,
    symbol=symbols,
    price=st.floats(min_value=1e-300, allow_nan=False, allow_infinity=False),
    quantity=st.floats(min_value=1e-300, allow_nan=False, allow_infinity=False),
    timestamp=st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
    side=st.sampled_from([None, "buy", "sell"]),
    exchange=st.one_of(st.none(), st.text(max_size=10)),
    trade_id=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
)


@given(tick=ticks)
def test_to_dict_round_trip(tick: Tick) -> None:
    d = tick.to_dict()
    assert tick_from_dict(d) == tick
    assert tick_from_dict(json.loads(json.dumps(d))) == tick
    assert tick_from_dict(orjson.loads(encode(d))) == tick
    assert set(d) >= {"symbol", "price", "quantity", "timestamp"}
    assert all(v is not None for v in d.values())


# Integers stay below 2**1000: larger ones overflow float() (see test_huge_integer_price_is_a_bad_tick).
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**1000), 2**1000), st.floats(), st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["BTCUSDT", "buy", "sell", "BUY", TS, float(TS), 1.5, 0, -1, 2**70, "", "x" * 50]),
)
records = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["symbol", "price", "quantity", "timestamp", "side", "exchange", "trade_id", "other"]),
        field_values,
        max_size=8,
    ),
    st.fixed_dictionaries({}, optional={k: field_values for k in GOOD}).map(lambda d: {**GOOD, **d}),
)


@given(raw=records)
def test_fuzz_only_bad_tick_errors(raw: Any) -> None:
    try:
        tick = tick_from_dict(raw)
    except BadTickError as exc:
        assert exc.reason in {
            "not_an_object", "missing_field", "unknown_field", "wrong_type", "not_finite", "not_positive",
            "bad_symbol", "bad_timestamp", "bad_side",
        }  # fmt: skip
        return
    assert isinstance(tick, Tick)
    assert tick.price > 0 and math.isfinite(tick.price) and tick.quantity > 0 and math.isfinite(tick.quantity)
    assert MIN_TIMESTAMP_MS <= tick.timestamp <= MAX_TIMESTAMP_MS and type(tick.timestamp) is int
    assert tick.side in (None, "buy", "sell")


# ---------------------------------------------------------------------------
# app.codec.decode_ticks
# ---------------------------------------------------------------------------
def test_decode_single_object() -> None:
    ticks_, rejected = decode_ticks(orjson.dumps(GOOD))
    assert ticks_ == [tick_from_dict(GOOD)] and rejected == []


def test_decode_none_value() -> None:
    ticks_, rejected = decode_ticks(None)
    assert ticks_ == [] and [r.reason for r in rejected] == ["empty"]


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"symbol": "X",}', b"\xff\xfe", b"NaN", b"[1, 2"])
def test_decode_malformed_json(raw: bytes) -> None:
    ticks_, rejected = decode_ticks(raw)
    assert ticks_ == [] and len(rejected) == 1
    assert rejected[0].reason == "malformed_json" and rejected[0].raw == raw


def test_decode_oversized_record() -> None:
    big = b'{"symbol": "' + b"A" * MAX_RECORD_BYTES + b'"}'
    ticks_, rejected = decode_ticks(big)
    assert ticks_ == [] and [r.reason for r in rejected] == ["oversized"]
    assert len(rejected[0].raw) <= 256  # the dead letter does not carry the whole megabyte


def test_decode_too_many_ticks_in_one_record() -> None:
    ticks_, rejected = decode_ticks(orjson.dumps([1] * (MAX_TICKS_PER_RECORD + 1)))
    assert ticks_ == [] and [r.reason for r in rejected] == ["oversized"]


def test_decode_batched_record_mixing_good_and_bad() -> None:
    second = {**GOOD, "timestamp": TS + 1, "side": "buy"}
    items = [GOOD, {**GOOD, "price": -1}, "junk", second, {**GOOD, "extra": 1}, None]
    ticks_, rejected = decode_ticks(orjson.dumps(items))
    assert ticks_ == [tick_from_dict(GOOD), tick_from_dict(second)]
    assert [r.reason for r in rejected] == ["not_positive", "not_an_object", "unknown_field", "not_an_object"]
    # Each rejected element carries its own JSON, not the whole record.
    assert [orjson.loads(r.raw) for r in rejected] == [items[1], items[2], items[4], items[5]]
    dlq = orjson.loads(rejected[0].dlq_record("ticks", 3, 42))
    assert (dlq["reason"], dlq["topic"], dlq["partition"], dlq["offset"]) == ("not_positive", "ticks", 3, 42)


def test_decode_empty_array() -> None:
    assert decode_ticks(b"[]") == ([], [])


def test_encode_is_deterministic() -> None:
    assert encode({"b": 1, "a": [1, 2]}) == encode({"a": [1, 2], "b": 1}) == b'{"a":[1,2],"b":1}'
    assert decode(encode(GOOD)) == GOOD


@given(raw=st.one_of(st.none(), st.binary(max_size=300)))
def test_decode_never_raises_on_bytes(raw: bytes | None) -> None:
    ticks_, rejected = decode_ticks(raw)
    assert all(isinstance(t, Tick) for t in ticks_)
    assert ticks_ or rejected or raw == b"[]" or (raw is not None and orjson.loads(raw) == [])
    for r in rejected:
        assert isinstance(r.reason, str) and isinstance(r.raw, bytes)
        orjson.loads(r.dlq_record("t", 0, 0))


@given(raw=records)
def test_decode_never_raises_on_json_values(raw: Any) -> None:
    try:
        payload = orjson.dumps(raw)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        return
    ticks_, rejected = decode_ticks(payload)
    n = len(raw) if isinstance(raw, list) else 1
    assert len(ticks_) + len(rejected) == n
