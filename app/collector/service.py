"""A pool of connections to one exchange, its symbols spread within the exchange's limits."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from app.collector.connection import Backoff, ExchangeConnection
from app.collector.exchanges import get_format
from app.collector.handler import FeedHandler, Sink
from app.collector.metrics import CollectorMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectorConfig:
    """What to collect and how hard to try.

    ``url`` overrides the exchange's public endpoint (tests, proxies, testnets);
    ``per_connection`` the exchange's default number of symbols per connection (it may not
    exceed the exchange's cap); ``keepalive_s`` and ``connect_interval_s`` its timings.
    """

    exchange: str
    symbols: tuple[str, ...]
    url: str | None = None
    per_connection: int | None = None
    symbol_prefix: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    keepalive_s: float | None = None
    connect_interval_s: float | None = None


def plan_connections(symbols: Sequence[str], per_connection: int) -> list[list[str]]:
    """Deal ``symbols`` (de-duplicated, order kept) into the fewest connections of at most
    ``per_connection`` each, sized evenly so that no connection carries much more than another.

    >>> plan_connections(["a", "b", "c", "d", "e"], 2)
    [['a', 'b'], ['c', 'd'], ['e']]
    >>> [len(g) for g in plan_connections([str(i) for i in range(201)], 200)]
    [101, 100]
    """
    if per_connection < 1:
        raise ValueError(f"per_connection must be >= 1, got {per_connection}")
    unique = list(dict.fromkeys(symbols))
    if not unique:
        return []
    n = math.ceil(len(unique) / per_connection)
    q, r = divmod(len(unique), n)
    groups, start = [], 0
    for i in range(n):
        size = q + (1 if i < r else 0)
        groups.append(unique[start : start + size])
        start += size
    return groups


class Collector:
    """Runs one :class:`ExchangeConnection` per symbol group until cancelled.

    Connections start ``connect_interval_s`` apart (the exchange's per-IP connection rate);
    they share one :class:`FeedHandler`, hence one gap tracker and one set of counters.
    """

    def __init__(self, config: CollectorConfig, sink: Sink, metrics: CollectorMetrics, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.config = config
        self.fmt = get_format(config.exchange, symbol_prefix=config.symbol_prefix)
        per_connection = config.per_connection or self.fmt.per_connection
        if not 1 <= per_connection <= self.fmt.max_per_connection:
            raise ValueError(f"per_connection for {self.fmt.name} must be in 1..{self.fmt.max_per_connection}, "
                             f"got {per_connection}")
        symbols = [self.fmt.exchange_symbol(s) for s in config.symbols if s.strip()]
        self.groups = plan_connections(symbols, per_connection)
        if not self.groups:
            raise ValueError("no symbols to subscribe to")
        self.url = config.url or self.fmt.default_url
        self.metrics = metrics
        self.handler = FeedHandler(self.fmt, sink, metrics, clock=clock)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.connections: list[ExchangeConnection] = []

    async def run(self) -> None:
        interval = self.config.connect_interval_s
        if interval is None:
            interval = self.fmt.connect_interval_s
        logger.info("%s: %d symbol(s) over %d connection(s) to %s", self.fmt.name,
                    sum(map(len, self.groups)), len(self.groups), self.url)
        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession() as session:
            self.connections = [
                ExchangeConnection(self.fmt, self.handler, session, self.url, group, self.metrics,
                                   name=f"conn-{i}", backoff=self.config.backoff,
                                   keepalive_s=self.config.keepalive_s, rng=self.rng)
                for i, group in enumerate(self.groups)
            ]
            try:
                for i, conn in enumerate(self.connections):
                    if i:
                        await asyncio.sleep(interval)
                    tasks.append(asyncio.create_task(conn.run(), name=conn.name))
                # Connections only end by cancellation: an exception here is a bug, and it stops
                # the collector (loudly) instead of leaving a pool silently short of symbols.
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
