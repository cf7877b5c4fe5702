"""Ticks their symbol's state refuses: out of order beyond the allowed lateness, duplicate trade ids.

The property that matters: a stream with such ticks slipped in gives exactly the state and alerts
of the stream without them, and each is reported with its reason (the worker sends it to the DLQ).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline import Pipeline, PipelineConfig, SymbolSnapshot
from models.synthetic import Injection, default_profiles, generate
from models.ticks import Tick

T0 = 1_700_000_000_000


def stream() -> list[Tick]:
    profiles = default_profiles(3, seed=5, illiquid_fraction=0.67)
    illiquid = [p.symbol for p in profiles if not p.liquid]
    batch, _ = generate(profiles, start_ms=T0, duration_s=2.5 * 3600,
                        injections=[Injection("pump_and_dump", illiquid[0], T0 + 2 * 3_600_000)], seed=5)
    return list(batch.ticks())


TICKS = stream()


def run(ticks: list[Tick]) -> tuple[dict[str, Any], list[str], list[tuple[int, str, str]]]:
    snaps: dict[str, SymbolSnapshot] = {}
    res = Pipeline(PipelineConfig()).process(snaps, ticks)
    states = {s: orjson.loads(orjson.dumps(v.to_state())) for s, v in snaps.items()}
    return states, [a.alert_id for a in res.alerts], res.rejected


CLEAN = run(TICKS)


@settings(max_examples=5, deadline=None)
@given(places=st.lists(st.integers(100, len(TICKS) - 1), min_size=1, max_size=30, unique=True),
       behind_s=st.integers(2, 86_400))
def test_late_ticks_are_refused_and_change_nothing(places: list[int], behind_s: int) -> None:
    mixed: list[Tick] = []
    late = set(places)
    for i, tick in enumerate(TICKS):
        mixed.append(tick)
        if i in late:  # after this tick its symbol's latest event is >= tick.timestamp
            mixed.append(dataclasses.replace(tick, timestamp=tick.timestamp - behind_s * 1000, price=tick.price * 3))
    states, alerts, rejected = run(mixed)
    assert CLEAN[1] and (states, alerts) == CLEAN[:2]
    assert [r for _, r, _ in rejected] == ["out_of_order"] * len(places)
    assert all(mixed[i].timestamp < TICKS[0].timestamp + 10**12 and mixed[i].price > 0 for i, *_ in rejected)


def test_small_lateness_is_folded_in() -> None:
    a = Tick("X", 1.0, 1.0, T0 + 10_000)
    b = Tick("X", 1.01, 1.0, T0 + 9_500)  # 500 ms late: within the default 1,000 ms
    states, _, rejected = run([a, b])
    assert rejected == [] and states["X"]["ticks"] == 2 and states["X"]["last_event_ms"] == T0 + 10_000


def test_duplicate_trade_ids_are_refused_per_exchange() -> None:
    ticks = [Tick("X", 1.0, 1.0, T0 + k, exchange="binance", trade_id=100 + k) for k in range(3)]
    replayed = dataclasses.replace(ticks[1], timestamp=T0 + 5)  # a recent trade id again
    reordered = Tick("X", 1.0, 1.0, T0 + 5, exchange="binance", trade_id=99)  # older id, never seen: kept
    other = Tick("X", 1.0, 1.0, T0 + 6, exchange="okx", trade_id=101)  # same id, other exchange
    states, _, rejected = run([*ticks, replayed, reordered, other])
    assert [(i, r) for i, r, _ in rejected] == [(3, "duplicate")]
    assert states["X"]["ticks"] == 5 and states["X"]["trade_ids"] == [101]
    assert states["X"]["trade_exchange"] == "okx"


def test_trade_id_survives_the_state_round_trip() -> None:
    snaps: dict[str, SymbolSnapshot] = {}
    p = Pipeline(PipelineConfig())
    p.process(snaps, [Tick("X", 1.0, 1.0, T0, exchange="binance", trade_id=7)])
    back = {"X": SymbolSnapshot.from_state(orjson.loads(orjson.dumps(snaps["X"].to_state())), p.config)}
    assert [r for _, r, _ in p.process(back, [Tick("X", 1.0, 1.0, T0 + 1, exchange="binance", trade_id=7)]).rejected] \
        == ["duplicate"]
