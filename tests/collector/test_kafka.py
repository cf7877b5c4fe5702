"""End to end: ``feed exchange`` (its CLI entry point) against a local WS server and the real broker.

The server replays the recorded frames (acks, heartbeats, errors, malformed frames, a gap, a
duplicate), a burst, then hangs up; the second connection carries on after a gap. Every tick
the normaliser expects must be in the ``ticks`` topic exactly once, unchanged, keyed by its
symbol, in exchange order per symbol, in JSON-array records the worker's decoder accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from app.broker import EmbeddedBroker, free_port
from app.codec import decode_ticks
from app.collector import cli
from app.collector.metrics import CollectorMetrics
from app.collector.producer import TickBatcher
from app.settings import Settings
from app.topics import ensure_topics
from models.ticks import Tick
from tests.integration._support import read_topic

from ._support import (
    EXCHANGE_NAMES,
    T0,
    Behaviour,
    ReplayServer,
    ServerConn,
    expected,
    expected_tick,
    recorded,
    symbol_for,
    trade_frame,
)

pytestmark = pytest.mark.integration

StartServer = Callable[[Behaviour], Awaitable[ReplayServer]]
RECORDED_SYMBOLS = {"binance": "BTCUSDT,ETHUSDT", "coinbase": "BTC-USD,ETH-USD", "okx": "BTC-USDT,ETH-USDT"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


async def scrape(port: int) -> str:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.text()
    except aiohttp.ClientError:
        return ""


def sample(text: str, name: str) -> float:
    m = re.search(rf"^cryptotrace_collector_{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("exchange", EXCHANGE_NAMES)
async def test_every_tick_reaches_kafka_exactly_as_normalised(
        exchange: str, broker: EmbeddedBroker, ws_server: StartServer, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    sol = symbol_for(exchange, "SOL")
    burst = [trade_frame(exchange, sol, 500 + i, T0 + i, price=150.0 + i % 3) for i in range(1500)]
    after_gap = [trade_frame(exchange, sol, 2010 + i, T0 + 3000 + i, taker="sell") for i in range(200)]
    want: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in expected(exchange)["ticks"]:
        want[t["symbol"]].append(t)
    want[sol] += [expected_tick(exchange, sol, 500 + i, T0 + i, price=150.0 + i % 3) for i in range(1500)]
    want[sol] += [expected_tick(exchange, sol, 2010 + i, T0 + 3000 + i, taker="sell") for i in range(200)]
    total = sum(map(len, want.values()))

    async def session(conn: ServerConn) -> None:
        await conn.recv_text()
        if conn.index == 0:
            await conn.send_all(recorded(exchange) + burst)
            return  # hang up mid-stream
        await conn.send_all(after_gap)
        await conn.hold()

    server = await ws_server(session)
    topic = f"collector-{exchange}-ticks"
    port = free_port()
    settings = Settings(broker_url=broker.url, ticks_topic=topic, topic_partitions=3)
    snaps = tmp_path / "tracemalloc"
    args = parse_args(["--exchange", exchange, "--symbols", RECORDED_SYMBOLS[exchange], sol, "--url", server.url,
                       "--duration", "4", "--metrics-port", str(port), "--backoff-base", "0.05",
                       "--linger-ms", "20"] + (["--tracemalloc-dir", str(snaps)] if exchange == "binance" else []))
    run = asyncio.create_task(asyncio.to_thread(cli.run, settings, args))

    async def produced() -> float:
        return sample(await scrape(port), "ticks_produced_total")

    last = 0.0

    async def poll() -> bool:
        nonlocal last
        last = await produced()
        return last >= total

    deadline = asyncio.get_running_loop().time() + 30
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, f"{last} of {total} ticks produced"
        assert not run.done(), "collector exited early"
        await asyncio.sleep(0.1)
    assert await run == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ticks_produced"] == total and summary["reconnects"] == 1
    assert summary["trade_id_gaps"] == expected(exchange)["gaps"] + 1  # + the SOL gap across the hang-up

    records = await asyncio.to_thread(read_topic, broker, topic, 1.0)
    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        ticks, rejected = decode_ticks(rec.value)
        assert rejected == []
        assert {t.symbol for t in ticks} == {rec.key.decode()}  # keyed by symbol, one symbol per record
        got[rec.key.decode()] += [t.to_dict() for t in ticks]
    assert got == want  # every tick, once, unchanged, in exchange order per symbol
    assert len(records) < total / 5  # packed: many ticks per record
    assert len(server.conns) == 2
    if exchange == "binance":  # --tracemalloc-dir: a snapshot at start and one at exit, loadable
        assert [tracemalloc.Snapshot.load(str(p)).traces is not None for p in sorted(snaps.iterdir())] == [True] * 2


async def test_a_full_buffer_drops_and_counts_instead_of_growing(broker: EmbeddedBroker) -> None:
    topic = "collector-buffer-ticks"
    await asyncio.to_thread(ensure_topics, broker.url, [topic], 1)
    metrics = CollectorMetrics.create(process=False)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
    await producer.start()
    try:
        batcher = TickBatcher(producer, topic, metrics, "okx", max_buffer=10, max_per_record=4)
        frames = [[Tick("BTC-USDT", 1.0, 1.0, T0 + i * 10 + j, "buy", "okx", i * 10 + j) for j in range(n)]
                  for i, n in enumerate((6, 4, 5))]
        for ticks in frames:
            batcher.add(ticks)
        assert batcher.buffered == 10
        await batcher.drain()
    finally:
        await producer.stop()
    assert metrics.value("ticks_dropped_total", exchange="okx") == 5
    assert metrics.value("ticks_produced_total", exchange="okx") == 10
    assert metrics.value("records_produced_total", exchange="okx") == 3  # 10 ticks, 4 per record
    records = await asyncio.to_thread(read_topic, broker, topic, 1.0)
    assert [t.trade_id for r in records for t in decode_ticks(r.value)[0]] == [*range(6), *range(10, 14)]
