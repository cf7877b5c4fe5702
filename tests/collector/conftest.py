"""Fixtures of the collector tests: local WebSocket servers, a running collector, a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from app.collector.connection import Backoff
from app.collector.metrics import CollectorMetrics
from app.collector.service import Collector, CollectorConfig
from models.ticks import Tick

from ._support import Behaviour, ReplayServer

# Fast timings for local servers: reconnects in tens of milliseconds, no connection pacing.
FAST_BACKOFF = Backoff(base_s=0.02, max_s=0.2, jitter=0.5)


@pytest.fixture
async def ws_server() -> AsyncIterator[Callable[[Behaviour], Awaitable[ReplayServer]]]:
    """``await ws_server(behaviour)`` -> a started local server; all stopped at teardown."""
    servers: list[ReplayServer] = []

    async def start(behaviour: Behaviour) -> ReplayServer:
        server = await ReplayServer(behaviour).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


@dataclass
class Running:
    """A collector running in the test's event loop, its ticks in ``ticks``."""

    collector: Collector
    metrics: CollectorMetrics
    task: asyncio.Task[None]
    ticks: list[Tick] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.value(name, exchange=self.collector.fmt.name, **labels)

    def dicts(self) -> list[dict[str, object]]:
        return [t.to_dict() for t in self.ticks]


@pytest.fixture
async def run_collector() -> AsyncIterator[Callable[..., Running]]:
    """``run_collector(exchange, symbols, url, **config)`` starts a collector whose sink is a
    plain list; cancelled (and its sockets closed) at teardown."""
    running: list[Running] = []

    def start(exchange: str, symbols: list[str], url: str, **kwargs: object) -> Running:
        kwargs.setdefault("backoff", FAST_BACKOFF)
        kwargs.setdefault("connect_interval_s", 0.0)
        config = CollectorConfig(exchange=exchange, symbols=tuple(symbols), url=url, **kwargs)  # type: ignore[arg-type]
        metrics = CollectorMetrics.create(process=False)
        ticks: list[Tick] = []
        collector = Collector(config, ticks.extend, metrics)
        r = Running(collector, metrics, asyncio.create_task(collector.run()), ticks)
        running.append(r)
        return r

    yield start
    for r in running:
        r.task.cancel()
        await asyncio.gather(r.task, return_exceptions=True)


# The integration tests' session broker (one memory-only Tansu for the whole run).
from tests.integration.conftest import broker  # noqa: E402,F401
