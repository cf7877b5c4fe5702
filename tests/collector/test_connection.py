"""The collector against a real local WebSocket server replaying each exchange's frames.

Covers the subscription handshake, recorded streams (acks, heartbeats, errors, malformed frames),
server-side disconnects mid-stream (reconnect + resubscribe + gap/duplicate accounting), bursts,
pings in both directions, dead connections, exchange close notices, refused connections and the
spreading of symbols over connections. The sink is a list; Kafka is in test_kafka.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from ._support import (
    EXCHANGE_NAMES,
    T0,
    Behaviour,
    ReplayServer,
    ServerConn,
    ack_frame,
    expected,
    expected_tick,
    recorded,
    symbol_for,
    trade_frame,
    wait_until,
)

StartServer = Callable[[Behaviour], Awaitable[ReplayServer]]
RECORDED_SYMBOLS = {"binance": ["BTCUSDT", "ETHUSDT"], "coinbase": ["BTC-USD", "ETH-USD"],
                    "okx": ["BTC-USDT", "ETH-USDT"]}


def subscribed_symbols(exchange: str, message: str) -> list[str]:
    """The symbols a subscribe message asks for, read back in the exchange's own format."""
    msg = orjson.loads(message)
    if exchange == "binance":
        assert msg["method"] == "SUBSCRIBE" and isinstance(msg["id"], int)
        assert all(p.endswith("@trade") for p in msg["params"])
        return [p.split("@")[0].upper() for p in msg["params"]]
    if exchange == "coinbase":
        assert msg["type"] == "subscribe" and "matches" in msg["channels"]
        return list(msg["product_ids"])
    assert msg["op"] == "subscribe" and {a["channel"] for a in msg["args"]} == {"trades"}
    return [a["instId"] for a in msg["args"]]


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
async def test_recorded_stream_through_a_real_socket(exchange: str, ws_server: StartServer,
                                                     run_collector: Callable[..., Any]) -> None:
    async def replay(conn: ServerConn) -> None:
        subscribed_symbols(exchange, await conn.recv_text())
        await conn.send_all(recorded(exchange))
        await conn.hold()

    server = await ws_server(replay)
    exp = expected(exchange)
    r = run_collector(exchange, RECORDED_SYMBOLS[exchange], server.url)
    await wait_until(lambda: r.value("frames_total") == len(recorded(exchange)), what="all frames")
    assert r.dicts() == exp["ticks"]
    assert subscribed_symbols(exchange, server.conns[0].received[0]) == RECORDED_SYMBOLS[exchange]
    assert r.value("trade_id_gaps_total") == exp["gaps"]
    assert r.value("connections") == 1 and r.metrics.total("reconnects_total", exchange) == 0


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
async def test_server_disconnect_mid_stream_reconnects_resubscribes_and_counts_the_gap(
        exchange: str, ws_server: StartServer, run_collector: Callable[..., Any]) -> None:
    sym = symbol_for(exchange)
    first = [trade_frame(exchange, sym, 100 + i, T0 + i) for i in range(50)]
    # Trades 150..154 happen while the client is away; the second session starts at 155.
    second = [trade_frame(exchange, sym, 155 + i, T0 + 55 + i) for i in range(50)]
    if exchange == "coinbase":  # Coinbase opens with the product's last trade: one already seen
        second.insert(0, first[-1].replace('"type":"match"', '"type":"last_match"'))

    async def session(conn: ServerConn) -> None:
        await conn.recv_text()
        await conn.send_all([ack_frame(exchange, sym)] + (first if conn.index == 0 else second))
        if conn.index == 0:
            return  # hang up mid-stream
        await conn.hold()

    server = await ws_server(session)
    r = run_collector(exchange, [sym], server.url)
    await wait_until(lambda: len(r.ticks) == 100, what="ticks of both sessions")
    assert [t.trade_id for t in r.ticks] == list(range(100, 150)) + list(range(155, 205))
    assert len(server.conns) == 2
    assert server.conns[0].received[0] == server.conns[1].received[0]  # resubscribed, same symbols
    assert r.value("reconnects_total", reason="closed") == 1
    assert (r.value("trade_id_gaps_total"), r.value("trades_missing_total")) == (1, 5)
    assert r.value("duplicate_trades_total") == (1 if exchange == "coinbase" else 0)


@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
async def test_burst_with_malformed_frames_loses_nothing(exchange: str, ws_server: StartServer,
                                                         run_collector: Callable[..., Any]) -> None:
    syms = [symbol_for(exchange, b) for b in ("BTC", "ETH", "SOL")]
    frames, want = [], []
    for i in range(3000):
        sym = syms[i % 3]
        frames.append(trade_frame(exchange, sym, 10_000 + i // 3, T0 + i, price=100 + i % 7, taker="sell"))
        want.append(expected_tick(exchange, sym, 10_000 + i // 3, T0 + i, price=100.0 + i % 7, taker="sell"))
        if i % 500 == 0:
            frames.append(frames[-1][:-7])  # truncated mid-frame

    async def burst(conn: ServerConn) -> None:
        await conn.recv_text()
        await conn.send_all(frames)  # back to back, no pause
        await conn.hold()

    server = await ws_server(burst)
    r = run_collector(exchange, syms, server.url)
    await wait_until(lambda: r.value("frames_total") == len(frames), what="the burst")
    assert r.dicts() == want
    assert r.value("invalid_frames_total", reason="malformed_json") == 6
    assert r.value("trade_id_gaps_total") == 0 and r.metrics.total("reconnects_total", exchange) == 0


async def test_binance_server_ping_is_answered_with_its_payload(ws_server: StartServer,
                                                                 run_collector: Callable[..., Any]) -> None:
    pongs: list[bytes] = []

    async def pinging(conn: ServerConn) -> None:
        await conn.recv_text()
        pongs.append(await conn.ping(b"1795300000000"))
        await conn.send_all([trade_frame("binance", "BTCUSDT", 1, T0)])
        pongs.append(await conn.ping(b""))
        await conn.hold()

    server = await ws_server(pinging)
    r = run_collector("binance", ["BTCUSDT"], server.url)
    await wait_until(lambda: len(pongs) == 2 and len(r.ticks) == 1, what="two pongs and a trade")
    assert pongs == [b"1795300000000", b""]


async def test_okx_client_sends_text_ping_when_quiet_and_stays_connected(
        ws_server: StartServer, run_collector: Callable[..., Any]) -> None:
    async def quiet(conn: ServerConn) -> None:  # answers "ping" with "pong" (ServerConn default)
        await conn.recv_text()
        await conn.hold()

    server = await ws_server(quiet)
    r = run_collector("okx", ["BTC-USDT"], server.url, keepalive_s=0.1)
    await wait_until(lambda: server.conns and server.conns[0].received.count("ping") >= 3, what="three pings")
    assert len(server.conns) == 1 and r.metrics.total("reconnects_total", "okx") == 0
    assert r.value("frame_kinds_total", kind="pong") >= 2


@pytest.mark.parametrize("exchange", ["okx", "coinbase", "binance"])
async def test_a_silent_connection_that_ignores_probes_is_replaced(
        exchange: str, ws_server: StartServer, run_collector: Callable[..., Any]) -> None:
    async def dead(conn: ServerConn) -> None:
        conn.answer_text_ping = conn.answer_pings = False
        await conn.recv_text()
        await conn.hold()

    server = await ws_server(dead)
    r = run_collector(exchange, [symbol_for(exchange)], server.url, keepalive_s=0.1)
    await wait_until(lambda: len(server.conns) >= 2 and bool(server.conns[1].received), what="a resubscription")
    assert r.value("reconnects_total", reason="idle") >= 1
    assert server.conns[0].received[0] == server.conns[1].received[0]


@pytest.mark.parametrize(("exchange", "notice"), [
    ("okx", '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.",'
            '"connId":"a4d3ae55"}'),
    ("binance", '{"e":"serverShutdown","E":1795300000000}'),
])
async def test_an_announced_close_is_met_by_reconnecting_first(
        exchange: str, notice: str, ws_server: StartServer, run_collector: Callable[..., Any]) -> None:
    sym = symbol_for(exchange)

    async def upgrading(conn: ServerConn) -> None:
        await conn.recv_text()
        if conn.index == 0:
            await conn.send_all([trade_frame(exchange, sym, 1, T0), notice])
        else:
            await conn.send_all([trade_frame(exchange, sym, 2, T0 + 1)])
        await conn.hold()  # the server does not close: the client leaves on its own

    server = await ws_server(upgrading)
    r = run_collector(exchange, [sym], server.url)
    await wait_until(lambda: len(r.ticks) == 2, what="the trade after the reconnect")
    assert r.value("reconnects_total", reason="server_notice") == 1
    assert r.value("trade_id_gaps_total") == 0


async def test_refused_connections_are_retried_with_backoff(run_collector: Callable[..., Any]) -> None:
    from app.broker import free_port

    r = run_collector("okx", ["BTC-USDT"], f"ws://127.0.0.1:{free_port()}/ws")
    await wait_until(lambda: r.value("reconnects_total", reason="io_error") >= 3, what="three retries")
    assert not r.task.done()  # still trying, not crashed


async def test_symbols_are_spread_over_connections(ws_server: StartServer,
                                                   run_collector: Callable[..., Any]) -> None:
    async def idle(conn: ServerConn) -> None:
        await conn.recv_text()
        await conn.hold()

    server = await ws_server(idle)
    symbols = [f"S{i}USDT" for i in range(7)]
    r = run_collector("binance", symbols, server.url, per_connection=3)
    await wait_until(lambda: len(server.conns) == 3 and all(c.received for c in server.conns), what="3 conns")
    groups = [subscribed_symbols("binance", c.received[0]) for c in server.conns]
    assert sorted(map(len, groups)) == [2, 2, 3]
    assert sorted(s for g in groups for s in g) == sorted(symbols)
    await wait_until(lambda: r.value("connections") == 3, what="gauge")
    r.task.cancel()
    await asyncio.gather(r.task, return_exceptions=True)
    assert r.value("connections") == 0
