"""Property-based fuzzing of tick records through a real worker.

Hypothesis draws 200 bad records, each with exactly one defect whose rejection reason is known
from how it was made (malformed JSON, NaN/Infinity literals, wrong types, zero or negative
numbers, absurd timestamps, unknown or missing fields, bad symbols and sides, non-objects,
tombstones), the places where they are slipped into a seeded valid stream with a pump in it, and
25 valid ticks re-sent a minute late (out of order, refused by their symbol's state).
One worker processes the mix. Then: every bad record is in the DLQ with its reason and counted
in the metrics; the worker is still the same process; and the valid records gave exactly the state
(every snapshot field except the Kafka offsets, which the bad records shift) and the alerts they
give on their own, computed in-process by the pure pipeline.

One example per run (derandomized, no shrinking): each example costs a worker run, and the
codec's own property tests (tests/models/test_ticks_and_codec.py) cover many more records.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.broker import EmbeddedBroker
from models.pipeline import Pipeline, PipelineConfig, SymbolSnapshot
from models.synthetic import Injection, default_profiles, generate
from models.ticks import KNOWN_FIELDS, tick_from_dict

from ._support import Names, Raw, Workers, make_names, produce_raw, read_json, read_topic, tail

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
H = 3_600_000
BAD = 200
LATE = 25
LATE_S = 60
GOOD = {"symbol": "BTCUSDT", "price": 100.5, "quantity": 0.25, "timestamp": T0 + 1, "side": "buy"}


def with_(field: str, value: Any) -> dict[str, Any]:
    return {**GOOD, field: value}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


j = orjson.dumps
non_numbers = st.one_of(st.text(max_size=8), st.booleans(), st.lists(st.integers(), max_size=2), st.none())
#: (reason, record value) with exactly one defect each.
bad_records = st.one_of(
    st.integers(1, len(j(GOOD)) - 1).map(lambda k: ("malformed_json", j(GOOD)[:k])),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]).map(
        lambda lit: ("malformed_json", j(with_("price", 1.0)).replace(b"1.0", lit))),
    st.sampled_from(["price", "quantity"]).flatmap(
        lambda f: non_numbers.filter(lambda v: v is not None).map(lambda v: ("wrong_type", j(with_(f, v))))),
    st.tuples(st.sampled_from(["price", "quantity"]), st.floats(max_value=0.0, allow_nan=False,
                                                                 allow_infinity=False)).map(
        lambda fv: ("not_positive", j(with_(*fv)))),
    st.one_of(st.integers(0, 946_684_799_999), st.integers(4_102_444_800_001, 2**62)).map(
        lambda t: ("bad_timestamp", j(with_("timestamp", t)))),
    st.integers(T0, T0 + H).map(lambda t: ("bad_timestamp", j(with_("timestamp", t + 0.5)))),
    st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_FIELDS).map(
        lambda k: ("unknown_field", j({**GOOD, k: 1}))),
    st.sampled_from(["symbol", "price", "quantity", "timestamp"]).map(lambda f: ("missing_field", j(without(f)))),
    st.sampled_from(["BTC USDT", "BTCUSDT\n", "", "x" * 41, "-BTC", "BTC$"]).map(
        lambda s: ("bad_symbol", j(with_("symbol", s)))),
    st.text(max_size=6).filter(lambda s: s.lower() not in ("buy", "sell")).map(
        lambda s: ("bad_side", j(with_("side", s)))),
    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), min_size=1, max_size=3)).map(
        lambda v: ("not_an_object", j(v))),
    st.just(("empty", None)),
)


def valid_stream() -> list[dict[str, Any]]:
    profiles = default_profiles(4, seed=17, illiquid_fraction=0.75)
    illiquid = [p.symbol for p in profiles if not p.liquid]
    batch, _ = generate(profiles, start_ms=T0, duration_s=2.5 * 3600,
                        injections=[Injection("pump_and_dump", illiquid[0], T0 + 2 * H)], seed=17)
    return list(batch.records())


def reference(records: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    snaps: dict[str, SymbolSnapshot] = {}
    result = Pipeline(PipelineConfig(), None).process(snaps, [tick_from_dict(r) for r in records])
    states = {s: orjson.loads(j(snap.to_state())) for s, snap in snaps.items()}
    return states, {a.alert_id for a in result.alerts}


def check_bad(reason: str, value: bytes | None) -> None:
    """Sanity of the generator itself (independent of the codec): the defect is what it claims."""
    if reason == "malformed_json":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(value or b"")
    elif reason not in ("empty", "not_an_object"):
        rec = orjson.loads(value or b"")
        assert isinstance(rec, dict) and not (isinstance(rec.get("price"), float) and math.isnan(rec["price"]))


@settings(max_examples=1, derandomize=True, phases=[Phase.generate], deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_records_go_to_dlq_and_leave_state_and_alerts_untouched(
        data: st.DataObject, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> None:
    valid = valid_stream()
    bad = data.draw(st.lists(bad_records, min_size=BAD, max_size=BAD), label="bad records")
    places = data.draw(st.lists(st.integers(0, len(valid)), min_size=BAD, max_size=BAD), label="positions")
    symbols = sorted({r["symbol"] for r in valid})
    keys = data.draw(st.lists(st.sampled_from(symbols), min_size=BAD, max_size=BAD), label="keys")
    # Out of order: a copy of a valid tick, LATE_S older, sent right after it (same key, same partition).
    late = set(data.draw(st.lists(st.integers(0, len(valid) - 1), min_size=LATE, max_size=LATE, unique=True),
                         label="late ticks"))
    for reason, value in bad:
        check_bad(reason, value)
    inserted: dict[int, list[Raw]] = {}
    for (_, value), at, key in zip(bad, places, keys, strict=True):
        inserted.setdefault(at, []).append((key.encode(), value, None))
    items: list[Raw] = []
    for i, rec in enumerate(valid):
        items += inserted.get(i, [])
        items.append((rec["symbol"].encode(), j(rec), None))
        if i in late:
            items.append((rec["symbol"].encode(), j({**rec, "timestamp": rec["timestamp"] - LATE_S * 1000}), None))
    items += inserted.get(len(valid), [])

    names: Names = make_names("fuzz")
    names.create_topics(broker)
    assert produce_raw(broker, names.ticks, items) == len(valid) + BAD + LATE
    ws = Workers(broker, names, tmp_path_factory.mktemp("fuzz"))
    try:
        w = ws.start()
        pid = w.proc.pid if w.proc else None
        counters = w.wait_processed(len(valid), timeout=120.0)
        assert counters["ticks_processed"] == len(valid)
        expected = Counter(reason for reason, _ in bad) + Counter({"out_of_order": LATE})
        dlq = read_json(broker, names.dlq, idle_s=1.5)
        assert Counter(r["reason"] for r in dlq) == expected
        counted = re.findall(r'^cryptotrace_ticks_rejected_total\{reason="([^"]+)"\} (\S+)$', w.metrics(), re.M)
        assert {reason: float(n) for reason, n in counted} == {k: float(v) for k, v in expected.items()}
        assert w.alive() and w.proc is not None and w.proc.pid == pid, tail(w.log_path, 3000)

        states, alert_ids = reference(valid)
        table: dict[str, dict[str, Any]] = {}
        for rec in read_topic(broker, f"{names.app_id}-symbol-state-changelog", idle_s=1.0):
            if rec.value is not None:
                table[rec.key.decode()] = json.loads(rec.value)
        assert set(table) == set(states) == set(symbols)
        for sym, state in states.items():
            got = {k: v for k, v in table[sym].items() if k != "offsets"}
            assert got == {k: v for k, v in state.items() if k != "offsets"}, sym
        alerts = [json.loads(r.value)["alert_id"] for r in read_topic(broker, names.alerts, idle_s=1.0)]
        assert alert_ids and sorted(alerts) == sorted(alert_ids)
    finally:
        ws.stop_all()
