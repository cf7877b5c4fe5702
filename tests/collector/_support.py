"""Test support: recorded frames, frame builders in each exchange's format, a local WS server.

The server is a real aiohttp WebSocket server on 127.0.0.1 (free port). Each accepted
connection is handed to a *behaviour* coroutine written by the test (replay these frames, drop
the connection, ping, stay silent...); everything the client sends is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

FRAMES = Path(__file__).parent / "frames"
EXCHANGE_NAMES = ("binance", "coinbase", "okx")
T0 = 1_795_300_000_000


def recorded(exchange: str) -> list[str]:
    """The recorded frames of ``exchange``, one text frame per line, as sent by the exchange."""
    return (FRAMES / f"{exchange}.jsonl").read_text().splitlines()


def expected(exchange: str) -> dict[str, Any]:
    return dict(json.loads((FRAMES / f"{exchange}.expected.json").read_text()))


# --------------------------------------------------------------------------- frame builders
def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}123Z"


def trade_frame(exchange: str, symbol: str, trade_id: int, ts: int, *, price: float = 100.0,
                qty: float = 0.5, taker: str = "buy") -> str:
    """One trade in ``exchange``'s documented format (``taker`` is the aggressor side)."""
    if exchange == "binance":
        return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": {
            "e": "trade", "E": ts + 1, "s": symbol, "t": trade_id, "p": f"{price:.8f}", "q": f"{qty:.8f}",
            "T": ts, "m": taker == "sell", "M": True}}).decode()
    if exchange == "coinbase":
        return orjson.dumps({"type": "match", "trade_id": trade_id, "sequence": trade_id * 3,
                             "maker_order_id": "m", "taker_order_id": "t", "time": _iso(ts), "product_id": symbol,
                             "size": f"{qty:.8f}", "price": f"{price:.2f}",
                             "side": "sell" if taker == "buy" else "buy"}).decode()
    return orjson.dumps({"arg": {"channel": "trades", "instId": symbol}, "data": [{
        "instId": symbol, "tradeId": str(trade_id), "px": f"{price}", "sz": f"{qty}", "side": taker,
        "ts": str(ts), "count": "1", "source": "0", "seqId": trade_id}]}).decode()


def ack_frame(exchange: str, symbol: str) -> str:
    if exchange == "binance":
        return '{"result":null,"id":1}'
    if exchange == "coinbase":
        channels = [{"name": "matches", "product_ids": [symbol]}]
        return orjson.dumps({"type": "subscriptions", "channels": channels}).decode()
    return orjson.dumps({"event": "subscribe", "arg": {"channel": "trades", "instId": symbol},
                         "connId": "a4d3ae55"}).decode()


def symbol_for(exchange: str, base: str = "BTC") -> str:
    return {"binance": f"{base}USDT", "coinbase": f"{base}-USD", "okx": f"{base}-USDT"}[exchange]


def expected_tick(exchange: str, symbol: str, trade_id: int, ts: int, *, price: float = 100.0,
                  qty: float = 0.5, taker: str = "buy") -> dict[str, Any]:
    return {"symbol": symbol, "price": price, "quantity": qty, "timestamp": ts, "side": taker,
            "exchange": exchange, "trade_id": trade_id}


# --------------------------------------------------------------------------- WS server
class ServerConn:
    """One accepted client connection, seen from the server."""

    def __init__(self, ws: web.WebSocketResponse, index: int, path: str) -> None:
        self.ws = ws
        self.index = index
        self.path = path
        self.received: list[str] = []  # text frames from the client, in order
        self.pongs: list[bytes] = []
        self.answer_pings = True  # WebSocket ping frames from the client
        self.answer_text_ping = True  # OKX: "ping" -> "pong"
        self.closed = asyncio.Event()
        self._texts: asyncio.Queue[str] = asyncio.Queue()
        self._pong = asyncio.Event()

    async def read_loop(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.TEXT:
                self.received.append(msg.data)
                if msg.data == "ping" and self.answer_text_ping:
                    await self.ws.send_str("pong")
                else:
                    self._texts.put_nowait(msg.data)
            elif msg.type is WSMsgType.PING:
                if self.answer_pings:
                    await self.ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                self.pongs.append(msg.data)
                self._pong.set()
        self.closed.set()

    async def recv_text(self, timeout: float = 5.0) -> str:
        return await asyncio.wait_for(self._texts.get(), timeout)

    async def send_all(self, frames: Iterable[str]) -> None:
        for f in frames:
            await self.ws.send_str(f)

    async def ping(self, payload: bytes, timeout: float = 5.0) -> bytes:
        """Send a ping frame; return the payload of the pong that answers it."""
        self._pong.clear()
        await self.ws.ping(payload)
        await asyncio.wait_for(self._pong.wait(), timeout)
        return self.pongs[-1]

    async def hold(self) -> None:
        """Keep the connection open until the client leaves."""
        await self.closed.wait()


Behaviour = Callable[[ServerConn], Awaitable[None]]


class ReplayServer:
    """Local WebSocket server; ``behaviour(conn)`` runs for each connection, then it is closed."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.conns: list[ServerConn] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> ReplayServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = ServerConn(ws, len(self.conns), request.path)
        self.conns.append(conn)
        reader = asyncio.create_task(conn.read_loop())
        try:
            await self.behaviour(conn)
        finally:
            await ws.close()  # the server hangs up: the client must reconnect
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        return ws


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
