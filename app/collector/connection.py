"""One exchange WebSocket (aiohttp): connect, subscribe, keep alive, read, reconnect.

The connection owns no data: frames go to the shared :class:`FeedHandler`. It runs until
cancelled (the collector cancels it to stop; aiohttp then closes the socket).

Keep-alive, per exchange: every ping frame the server sends is answered with a pong carrying
the same payload (Binance requires it; ``autoping`` is off so that server pings also count as
liveness). After ``keepalive_s`` without any frame the client probes: OKX's text ``ping`` or a
WebSocket ping frame; if the next ``keepalive_s`` bring nothing either, the connection is
declared dead and replaced.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType

from app.collector.formats import ExchangeFormat
from app.collector.handler import FeedHandler
from app.collector.metrics import CollectorMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` waits in ``[d * (1 - jitter), d]`` with
    ``d = min(max_s, base_s * 2**n)``.

    Partial ("equal") jitter rather than full jitter: the floor keeps a reconnect storm of many
    connections inside the exchanges' per-IP connection rates, the random part spreads them.

    >>> b = Backoff(base_s=1.0, max_s=8.0, jitter=0.0)
    >>> [b.delay(n, random.Random(0)) for n in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_s, self.base_s * 2.0 ** min(attempt, 30))
        return d * (1.0 - self.jitter * rng.random())


class ExchangeConnection:
    """A WebSocket to ``url`` subscribed to ``symbols``, kept open until cancelled."""

    def __init__(self, fmt: ExchangeFormat, handler: FeedHandler, session: aiohttp.ClientSession, url: str,
                 symbols: Sequence[str], metrics: CollectorMetrics, *, name: str = "conn-0",
                 backoff: Backoff = Backoff(), keepalive_s: float | None = None,  # noqa: B008 - frozen
                 rng: random.Random | None = None) -> None:
        self.fmt = fmt
        self.handler = handler
        self.session = session
        self.url = url
        self.symbols = list(symbols)
        self.name = f"{fmt.name}/{name}"
        self.backoff = backoff
        self.keepalive_s = keepalive_s or fmt.keepalive_s
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._reconnects = metrics.reconnects
        self._open = metrics.connections.labels(fmt.name)
        self.sessions = 0  # connections that completed the subscription (for tests and logs)

    async def run(self) -> None:
        attempt = 0
        while True:
            reason, healthy = await self._session_once()
            if healthy:
                attempt = 0  # the last connection delivered trades: start the backoff over
            delay = self.backoff.delay(attempt, self.rng)
            attempt += 1
            self._reconnects.labels(self.fmt.name, reason).inc()
            logger.warning("%s: connection lost (%s); reconnecting in %.2f s (attempt %d)",
                           self.name, reason, delay, attempt)
            await asyncio.sleep(delay)

    async def _session_once(self) -> tuple[str, bool]:
        """One connection's life; returns (why it ended, whether it delivered trades)."""
        try:
            async with self.session.ws_connect(self.url, autoping=False, heartbeat=None,
                                               timeout=aiohttp.ClientWSTimeout(ws_close=5.0)) as ws:
                self._open.inc()
                try:
                    for i, msg in enumerate(self.fmt.subscribe_messages(self.symbols)):
                        if i:
                            await asyncio.sleep(self.fmt.control_interval_s)
                        await ws.send_str(msg)
                    self.sessions += 1
                    logger.info("%s: connected to %s, subscribed to %d symbol(s)", self.name, self.url,
                                len(self.symbols))
                    return await self._read(ws)
                finally:
                    self._open.dec()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            logger.debug("%s: connect/read failed: %r", self.name, exc)
            return "io_error", False

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[str, bool]:
        healthy = False
        probing = False
        handle = self.handler.handle
        while True:
            try:
                msg = await ws.receive(timeout=self.keepalive_s)
            except asyncio.TimeoutError:
                if probing:
                    return "idle", healthy
                probing = True
                if self.fmt.client_ping is not None:
                    await ws.send_str(self.fmt.client_ping)
                else:
                    await ws.ping()
                continue
            probing = False  # any frame proves the connection alive
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                frame = handle(msg.data)
                if frame.kind == "trades":
                    healthy = True
                elif frame.kind == "reconnect":
                    logger.info("%s: the exchange announced a close (%s)", self.name, frame.detail)
                    return "server_notice", healthy
            elif kind is WSMsgType.PING:
                await ws.pong(msg.data)
            elif kind is WSMsgType.PONG:
                pass
            elif kind is WSMsgType.ERROR:
                return "error", healthy
            else:  # CLOSE, CLOSING, CLOSED
                return "closed", healthy
