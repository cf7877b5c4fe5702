"""Unit tests of the read models and the two-level cache (real Redis on 127.0.0.1:6379, own DB and prefix)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from app.broker import free_port
from app.cache import RedisLink, RedisUnavailable, SymbolCache
from app.metrics import Metrics
from app.summary import History, Point
from models.ticks import Tick

T0 = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_history_one_point_per_bar_and_changed_points() -> None:
    h = History(maxlen=3, bar_ms=10_000)
    ticks = [Tick("X", p, 1.0, T0 + dt) for p, dt in ((1.0, 0), (2.0, 4_000), (3.0, 12_000))]
    changed = h.fold(ticks, [0.1, 0.7, None], {"X": {"mid": 1.5, "lower": 1.0, "upper": 2.0}})
    # The redelivered third tick (score None) draws nothing; the first bar holds close 2.0, max score 0.7.
    assert changed == {"X": (False, [[float(T0), 2.0, 0.7, 1.5, 1.0, 2.0]])}
    changed = h.fold([Tick("X", 4.0, 1.0, T0 + 5_000), Tick("X", 5.0, 1.0, T0 + 21_000)], [0.2, 0.3], {"X": None})
    updated, points = changed["X"]
    assert updated and [p[:3] for p in points] == [[float(T0), 4.0, 0.7], [float(T0 + 20_000), 5.0, 0.3]]
    h.fold([Tick("X", 6.0, 1.0, T0 + 31_000), Tick("X", 7.0, 1.0, T0 + 41_000)], [0.0, 0.0], {})
    assert [p[0] for p in h.get("X")] == [T0 + 20_000, T0 + 30_000, T0 + 40_000]  # maxlen kept


def _fold_tick_by_tick(points: dict[str, list[Point]], ticks: list[Tick], scores: list[float | None],
                       bar_ms: int) -> None:
    """History.fold as first written, one tick at a time (no maxlen, no symbol bound): the reference."""
    for tick, score in zip(ticks, scores, strict=True):
        if score is None:
            continue
        dq = points.setdefault(tick.symbol, [])
        bar = float(tick.timestamp // bar_ms * bar_ms)
        last = dq[-1] if dq else None
        if last is not None and last[0] is not None and last[0] >= bar:
            last[1] = tick.price
            last[2] = max(last[2] or 0.0, score)
        else:
            dq.append([bar, tick.price, score, None, None, None])


tick_draws = st.tuples(st.sampled_from("ABC"), st.integers(-30_000, 60_000), st.floats(0.5, 2.0),
                       st.one_of(st.none(), st.sampled_from([0.0, 1e-6, 0.3, 0.9])))


@settings(max_examples=200)
@given(batches=st.lists(st.lists(tick_draws, max_size=25), max_size=4))
def test_history_folds_points_as_it_folded_ticks(batches: list[list[tuple[str, int, float, float | None]]]) -> None:
    # Per-symbol points from the compiled core, then joined to the history: the same points as folding
    # every tick into the history, late ticks (earlier bars) included.
    h, reference = History(maxlen=1_000, bar_ms=10_000), {}
    t = T0
    for batch in batches:
        ticks = [Tick(sym, price, 1.0, t + dt) for sym, dt, price, _ in batch]
        scores = [score for *_, score in batch]
        h.fold(ticks, scores, {})
        _fold_tick_by_tick(reference, ticks, scores, 10_000)
        t += 20_000
    assert {s: h.get(s) for s in reference} == reference


async def test_lru_answers_until_its_ttl_then_needs_redis() -> None:
    clock = Clock()
    metrics = Metrics.create()
    cache = SymbolCache(None, "p:", metrics, size=2, ttl_s=1.0, history_points=10, alerts_per_symbol=5, clock=clock)
    await cache.publish({"A": {"symbol": "A"}, "B": {"symbol": "B"}, "C": {"symbol": "C"}}, {}, [])
    assert await cache.summary("C") == {"symbol": "C"}
    with pytest.raises(RedisUnavailable):
        await cache.summary("A")  # evicted (size 2) and no Redis behind it
    clock.now += 2.0
    with pytest.raises(RedisUnavailable):
        await cache.summary("C")  # expired
    assert cache.shared is False


async def test_redis_down_is_fast_counted_and_recovers_with_a_new_epoch() -> None:
    clock = Clock()
    metrics = Metrics.create()
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", metrics, backoff_s=5.0, clock=clock)
    try:
        for _ in range(3):
            with pytest.raises(RedisUnavailable):
                await link.call("ping", lambda r: r.ping())
        # One real attempt, then the back-off answers without touching the network.
        assert metrics.redis_errors.labels("ping")._value.get() == 1.0
        assert link.up is False and metrics.redis_up._value.get() == 0.0
    finally:
        await link.close()
    link2 = RedisLink(os.environ.get("CRYPTOTRACE_TEST_REDIS", "redis://127.0.0.1:6379/15"), metrics, clock=clock)
    link2.up, link2._retry_at = False, 0.0  # as if it had failed before
    try:
        assert await link2.call("ping", lambda r: r.ping()) is True
        assert link2.epoch == 1 and metrics.redis_up._value.get() == 1.0
    finally:
        await link2.close()


async def test_publish_then_read_through_redis_from_another_worker() -> None:
    url = os.environ.get("CRYPTOTRACE_TEST_REDIS", "redis://127.0.0.1:6379/15")
    prefix = f"unit:{uuid.uuid4().hex}:"
    owner_m, reader_m = Metrics.create(), Metrics.create()
    owner_link, reader_link = RedisLink(url, owner_m), RedisLink(url, reader_m)
    kw: dict[str, Any] = {"size": 100, "ttl_s": 60.0, "history_points": 3, "alerts_per_symbol": 2}
    owner, reader = SymbolCache(owner_link, prefix, owner_m, **kw), SymbolCache(reader_link, prefix, reader_m, **kw)
    alert = {"alert_id": "a1", "symbol": "X", "event_time": T0, "severity": "high"}
    try:
        assert await owner.publish({"X": {"symbol": "X", "ticks": 3}}, {"X": (False, [[1, 2], [3, 4]])}, [alert])
        assert await owner.publish({"X": {"symbol": "X", "ticks": 4}}, {"X": (True, [[3, 5], [6, 7]])}, [])
        assert await reader.summary("X") == {"symbol": "X", "ticks": 4}
        assert await reader.summary("X") == {"symbol": "X", "ticks": 4}  # now from the reader's LRU
        assert await reader.history("X") == [[1, 2], [3, 5], [6, 7]]  # last point replaced, not repeated
        assert await reader.symbol_alerts("X") == [alert] and await reader.recent_alerts() == [alert]
        assert [s["symbol"] for s in await reader.summaries()] == ["X"]
        looked = {(s.labels["kind"], s.labels["result"]): s.value for m in reader_m.cache_lookups.collect()
                  for s in m.samples if s.name.endswith("_total")}
        assert looked[("summary", "redis")] == 1.0 and looked[("summary", "lru")] >= 2.0
        assert owner_m.redis_writes._value.get() == 2.0
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
        await owner_link.close()
        await reader_link.close()
