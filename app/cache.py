"""Two-level dashboard cache: an in-process LRU in front of Redis (``redis.asyncio``).

The owner of a symbol writes its summary, chart points and new alerts after each batch, in
one Redis pipeline (one round trip per batch, never per tick). Any worker answers dashboard
reads from its LRU (entries live ``ttl_s``) or from Redis, without hopping to the owner.

Redis is optional and allowed to fail: :class:`RedisLink` turns every error into
:class:`RedisUnavailable`, marks Redis down (logged once, counted, ``redis_up`` gauge) and
does not try again for ``backoff_s``, so a dead Redis costs the processing loop nothing.
Callers fall back to the cluster (routing to the owner). Values are JSON, never pickle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.metrics import Metrics
from app.summary import Point

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis is down (or in its back-off after a failure); the caller degrades."""


class RedisLink:
    """A Redis client that fails fast and softly; ``epoch`` counts recoveries (writers resync)."""

    def __init__(self, url: str, metrics: Metrics, *, timeout_s: float = 0.5, backoff_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # No client-side retries: one failure is enough to degrade; the back-off does the retrying.
        self.client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                     retry=Retry(NoBackoff(), 0))
        self.url = url
        self.metrics = metrics
        self.backoff_s = backoff_s
        self.clock = clock
        self.up: bool | None = None  # None until the first call
        self.epoch = 0
        self._retry_at = 0.0

    async def call(self, op: str, fn: Callable[[Redis], Awaitable[T]]) -> T:
        if self.up is False and self.clock() < self._retry_at:
            raise RedisUnavailable(op)
        try:
            result = await fn(self.client)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.metrics.redis_errors.labels(op).inc()
            if self.up is not False:
                logger.warning("redis %s unavailable (%s: %s): degraded (no shared cache, no registry), "
                               "retrying every %.1fs", self.url, op, exc, self.backoff_s)
            self.up = False
            self._retry_at = self.clock() + self.backoff_s
            self.metrics.redis_up.set(0)
            raise RedisUnavailable(op) from exc
        if self.up is not True:
            if self.up is False:
                self.epoch += 1
                logger.info("redis %s is back (recovery %d): resuming cache writes", self.url, self.epoch)
            self.up = True
            self.metrics.redis_up.set(1)
        return result

    async def close(self) -> None:
        await self.client.aclose()


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class SymbolCache:
    """Summaries, chart points and recent alerts: LRU, then Redis (when configured and up)."""

    def __init__(self, link: RedisLink | None, prefix: str, metrics: Metrics, *, size: int, ttl_s: float,
                 history_points: int, alerts_per_symbol: int, recent_alerts: int = 500,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.link = link
        self.prefix = prefix
        self.metrics = metrics
        self.size = size
        self.ttl_s = ttl_s
        self.history_points = history_points
        self.alerts_per_symbol = alerts_per_symbol
        self.recent_alerts_n = recent_alerts
        self.clock = clock
        self._lru: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    @property
    def shared(self) -> bool:
        """True when a Redis is configured and not in its back-off (reads may be answered here)."""
        link = self.link
        return link is not None and (link.up is not False or link.clock() >= link._retry_at)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # --------------------------------------------------------------------------- LRU level
    def _lru_get(self, key: str) -> tuple[bool, Any]:
        entry = self._lru.get(key)
        if entry is None:
            return False, None
        if entry[0] < self.clock():
            del self._lru[key]
            return False, None
        self._lru.move_to_end(key)
        return True, entry[1]

    def _lru_put(self, key: str, value: Any) -> None:
        self._lru[key] = (self.clock() + self.ttl_s, value)
        self._lru.move_to_end(key)
        while len(self._lru) > self.size:
            self._lru.popitem(last=False)

    async def _read(self, kind: str, key: str, fetch: Callable[[Redis], Awaitable[Any]],
                    decode: Callable[[Any], Any]) -> Any:
        """LRU, then Redis; None when neither has it. Raises RedisUnavailable when Redis must be asked and can't."""
        found, value = self._lru_get(key)
        if found:
            self.metrics.cache_lookups.labels(kind, "lru").inc()
            return value
        if self.link is None:
            raise RedisUnavailable(kind)
        try:
            raw = await self.link.call(kind, fetch)
        except RedisUnavailable:
            self.metrics.cache_lookups.labels(kind, "unavailable").inc()
            raise
        value = decode(raw)
        if value is None:
            self.metrics.cache_lookups.labels(kind, "miss").inc()
            return None
        self.metrics.cache_lookups.labels(kind, "redis").inc()
        self._lru_put(key, value)
        return value

    # --------------------------------------------------------------------------- reads
    async def summary(self, symbol: str) -> dict[str, Any] | None:
        key = self.key("sym", symbol)
        return await self._read("summary", key, lambda r: r.get(key), lambda raw: raw and orjson.loads(raw))  # type: ignore[no-any-return]

    async def summaries(self) -> list[dict[str, Any]]:
        """Every symbol any worker has written; one SMEMBERS and one MGET for the LRU's misses."""
        if self.link is None:
            raise RedisUnavailable("summaries")
        members = await self.link.call("symbols", lambda r: r.smembers(self.key("symbols")))
        symbols = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        out: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for sym in symbols:
            found, value = self._lru_get(self.key("sym", sym))
            if found:
                self.metrics.cache_lookups.labels("summary", "lru").inc()
                out[sym] = value
            else:
                missing.append(sym)
        if missing:
            keys = [self.key("sym", s) for s in missing]
            raws = await self.link.call("summaries", lambda r: r.mget(keys))
            for sym, key, raw in zip(missing, keys, raws, strict=True):
                if raw is None:
                    self.metrics.cache_lookups.labels("summary", "miss").inc()
                    continue
                self.metrics.cache_lookups.labels("summary", "redis").inc()
                out[sym] = orjson.loads(raw)
                self._lru_put(key, out[sym])
        return [out[s] for s in symbols if s in out]

    async def history(self, symbol: str) -> list[Point] | None:
        key = self.key("hist", symbol)
        return await self._read("history", key, lambda r: r.lrange(key, 0, -1),  # type: ignore[no-any-return]
                                lambda raws: [orjson.loads(x) for x in raws] or None)

    async def symbol_alerts(self, symbol: str) -> list[dict[str, Any]] | None:
        key = self.key("alerts", symbol)
        return await self._read("alerts", key, lambda r: r.lrange(key, 0, -1),  # type: ignore[no-any-return]
                                lambda raws: [orjson.loads(x) for x in raws] or None)

    async def recent_alerts(self) -> list[dict[str, Any]]:
        """Newest first, every worker's alerts (up to ``recent_alerts``)."""
        key = self.key("alerts")
        got = await self._read("alerts", key, lambda r: r.lrange(key, 0, -1),
                               lambda raws: [orjson.loads(x) for x in raws])
        return list(got or [])

    # --------------------------------------------------------------------------- owner writes
    async def publish(self, summaries: dict[str, dict[str, Any]], points: dict[str, tuple[bool, list[Point]]],
                      alerts: Iterable[dict[str, Any]], *, replace: bool = False) -> bool:
        """Write one batch's results: the LRU at once, Redis in one pipeline. False when Redis is down.

        ``replace``: ``points`` are whole histories and ``alerts`` whole per-symbol lists (a resync
        after Redis came back), so the lists are rewritten instead of appended to.
        """
        for sym, value in summaries.items():
            self._lru_put(self.key("sym", sym), value)
        alerts = list(alerts)
        if self.link is None or not (summaries or points or alerts):
            return self.link is not None
        n_hist, n_alerts = self.history_points, self.alerts_per_symbol

        async def write(r: Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            if summaries:
                pipe.mset({self.key("sym", s): _dumps(v) for s, v in summaries.items()})
                pipe.sadd(self.key("symbols"), *summaries)
            for sym, (updated_last, pts) in points.items():
                key = self.key("hist", sym)
                if replace:
                    pipe.delete(key)
                elif updated_last:
                    pipe.rpop(key)  # the owner is the only writer of its symbols' lists
                if pts:
                    pipe.rpush(key, *[_dumps(p) for p in pts])
                    pipe.ltrim(key, -n_hist, -1)
            if replace:
                for sym in {a["symbol"] for a in alerts}:
                    pipe.delete(self.key("alerts", sym))
            for a in alerts:  # oldest first, so LPUSH leaves the newest at the head
                pipe.lpush(self.key("alerts", a["symbol"]), _dumps(a))
                pipe.ltrim(self.key("alerts", a["symbol"]), 0, n_alerts - 1)
                if not replace:
                    pipe.lpush(self.key("alerts"), _dumps(a))
            if alerts and not replace:
                pipe.ltrim(self.key("alerts"), 0, self.recent_alerts_n - 1)
            return await pipe.execute()

        try:
            await self.link.call("publish", write)
        except RedisUnavailable:
            return False
        self.metrics.redis_writes.inc()
        return True
