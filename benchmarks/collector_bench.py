"""Collector benchmark: frames/s per process for each exchange format, and memory flatness.

Run: ``python -m benchmarks.collector_bench --out DIR [--frames 200000] [--symbols 50]``

Writes ``DIR/collector_bench.json`` and prints a summary and the command.

Throughput (no tracemalloc), per exchange, on synthetic trade frames written in the exchange's
documented format (one trade per frame, ``--symbols`` symbols, consecutive trade ids):

* ``parse``: the normaliser alone (JSON decode, field parsing, tick validation);
* ``pipeline``: everything the collector does to a frame on one core without the network:
  :class:`FeedHandler` (parse, de-duplication, gap check, counters, receive-lag histogram) and
  the real :class:`TickBatcher` (buffer per symbol, encode JSON-array records, ack bookkeeping,
  exchange-to-Kafka histogram), with a producer that acknowledges at once instead of Kafka.
  Socket reads (aiohttp) and the broker round trip are not in the figure;
* ``socket`` (one run): the same behind a real local WebSocket (aiohttp client reading, the
  server sending from its own process), i.e. what one collector process sustains from one socket.

Each is the median of ``--repeats`` runs. The issue's target is >= 50,000 frames/s per process.

Memory (measured first, so that RSS is not inflated by the throughput runs): tracemalloc on,
one warm-up pass over all exchanges, snapshot + RSS, then
``--memory-passes`` more passes with fresh trade ids (so the data changes but not the symbol
set), snapshot + RSS again; the allocation sites that grew most are listed. A collector whose
memory is flat shows traced growth near zero however many frames went through.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from app.collector.exchanges import EXCHANGES, get_format
from app.collector.handler import FeedHandler
from app.collector.memory import rss_bytes, take_snapshot, top_growth
from app.collector.metrics import CollectorMetrics
from app.collector.producer import TickBatcher

TARGET_FPS = 50_000


def make_frames(exchange: str, n: int, symbols: int, id0: int = 1_000_000, t0: int | None = None) -> list[str]:
    """``n`` single-trade frames in ``exchange``'s format, round-robin over ``symbols`` symbols.

    As ``str``, which is what aiohttp hands over for a text frame (and ``orjson.dumps`` output
    keeps a 4 KB buffer per object: 200,000 of them would dominate the RSS figures).
    """
    t0 = t0 if t0 is not None else int(time.time() * 1000) - 60_000
    out = []
    for i in range(n):
        s, tid, ts = i % symbols, id0 + i // symbols, t0 + i // 10
        price, qty, taker = f"{100 + (i * 7919) % 1000 / 100:.2f}", f"{0.001 + (i % 97) / 1000:.6f}", i % 3 == 0
        if exchange == "binance":
            sym = f"SYM{s}USDT"
            frame: dict[str, Any] = {"stream": f"{sym.lower()}@trade", "data": {
                "e": "trade", "E": ts + 1, "s": sym, "t": tid, "p": price, "q": qty, "T": ts, "m": taker, "M": True}}
        elif exchange == "coinbase":
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1000)) + f".{ts % 1000:03d}421Z"
            frame = {"type": "match", "trade_id": tid, "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
                     "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1", "side": "buy" if taker else "sell",
                     "size": qty, "price": price, "product_id": f"SYM{s}-USD", "sequence": tid * 3, "time": iso}
        else:
            inst = f"SYM{s}-USDT"
            frame = {"arg": {"channel": "trades", "instId": inst}, "data": [{
                "instId": inst, "tradeId": str(tid), "px": price, "sz": qty, "side": "sell" if taker else "buy",
                "ts": str(ts), "count": "1", "source": "0", "seqId": tid}]}
        out.append(orjson.dumps(frame).decode())
    return out


class InstantProducer:
    """Stands in for Kafka in a CPU benchmark: every send is acknowledged at once."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> asyncio.Future[Any]:
        self.records += 1
        self.bytes += len(value or b"")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def time_parse(exchange: str, frames: list[str]) -> float:
    parse = get_format(exchange).parse
    t0 = time.perf_counter()
    for f in frames:
        parse(f)
    return time.perf_counter() - t0


async def _pipeline(exchange: str, frames: list[str], flush_every: int = 1000) -> float:
    metrics = CollectorMetrics.create(process=False)
    batcher = TickBatcher(InstantProducer(), "ticks", metrics, exchange)
    handle = FeedHandler(get_format(exchange), batcher.add, metrics).handle
    t0 = time.perf_counter()
    for i in range(0, len(frames), flush_every):
        for f in frames[i : i + flush_every]:
            handle(f)
        await batcher.flush()
    await batcher.drain()
    elapsed = time.perf_counter() - t0
    assert metrics.value("ticks_produced_total", exchange=exchange) == len(frames), "benchmark lost ticks"
    return elapsed


def time_pipeline(exchange: str, frames: list[str]) -> float:
    return asyncio.run(_pipeline(exchange, frames))


def _serve(port: int, exchange: str, n: int, symbols: int, ready: Any) -> None:  # pragma: no cover - child
    """A local server (own process) that sends ``n`` frames to each client once it subscribed."""
    from aiohttp import web

    async def main() -> None:
        frames = make_frames(exchange, n, symbols)

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.receive()  # the subscribe message
            for f in frames:
                await ws.send_str(f)
            async for _ in ws:
                pass
            return ws

        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def _socket_run(exchange: str, url: str, n: int, symbols: int) -> float:
    from app.collector.service import Collector, CollectorConfig

    metrics = CollectorMetrics.create(process=False)
    batcher = TickBatcher(InstantProducer(), "ticks", metrics, exchange)
    fmt = get_format(exchange)
    names = [f"SYM{s}USDT" if exchange == "binance" else f"SYM{s}-USD" if exchange == "coinbase" else f"SYM{s}-USDT"
             for s in range(symbols)]
    collector = Collector(CollectorConfig(exchange, tuple(names), url=url, per_connection=fmt.max_per_connection),
                          batcher.add, metrics)
    stats = metrics.stats(exchange)
    flusher = asyncio.create_task(batcher.run())
    task = asyncio.create_task(collector.run())
    t0 = time.perf_counter()
    while stats.frames < n:
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    batcher.close()
    await flusher
    assert stats.ticks_produced == n, "benchmark lost ticks"
    return elapsed


def socket_rate(exchange: str, n: int, symbols: int) -> float:
    """Frames/s through a real local socket: aiohttp reads + the whole pipeline (server in its own
    process; on a 2-core machine the two compete with each other and with everything else)."""
    import multiprocessing

    from app.broker import free_port

    ctx = multiprocessing.get_context("spawn")
    port, ready = free_port(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(port, exchange, n, symbols, ready), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("benchmark server did not start")
        return n / asyncio.run(_socket_run(exchange, f"ws://127.0.0.1:{port}/ws", n, symbols))
    finally:
        proc.terminate()
        proc.join(10)


def median_rate(fn: Callable[[], float], n: int, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        gc.collect()
        rates.append(n / fn())
    return statistics.median(rates), rates


def throughput(exchange: str, n: int, symbols: int, repeats: int) -> dict[str, Any]:
    frames = make_frames(exchange, n, symbols)
    parse_fps, parse_runs = median_rate(lambda: time_parse(exchange, frames), n, repeats)
    pipe_fps, pipe_runs = median_rate(lambda: time_pipeline(exchange, frames), n, repeats)
    sock_fps = socket_rate(exchange, n, symbols)
    return {
        "frames": n, "mean_frame_bytes": round(sum(map(len, frames)) / n, 1),
        "parse_frames_per_s": round(parse_fps), "parse_us_per_frame": round(1e6 / parse_fps, 2),
        "pipeline_frames_per_s": round(pipe_fps), "pipeline_us_per_frame": round(1e6 / pipe_fps, 2),
        "socket_frames_per_s": round(sock_fps),
        "parse_runs_frames_per_s": [round(r) for r in parse_runs],
        "pipeline_runs_frames_per_s": [round(r) for r in pipe_runs],
        "meets_target": pipe_fps >= TARGET_FPS,
    }


async def _memory_passes(n: int, symbols: int, passes: int) -> dict[str, Any]:
    """Warm-up pass, snapshot, ``passes`` more passes (new trade ids), snapshot."""
    metrics = CollectorMetrics.create(process=False)
    pipes = []
    for name in EXCHANGES:
        batcher = TickBatcher(InstantProducer(), "ticks", metrics, name)
        pipes.append((name, FeedHandler(get_format(name), batcher.add, metrics), batcher))

    async def one_pass(k: int) -> None:
        for name, handler, batcher in pipes:
            # Every pass continues each symbol's ids where the last one stopped: no gaps, no duplicates.
            frames = make_frames(name, n, symbols, id0=1_000_000 + k * (n // symbols))
            for i in range(0, n, 1000):
                for f in frames[i : i + 1000]:
                    handler.handle(f)
                await batcher.flush()
            await batcher.drain()

    await one_pass(0)
    gc.collect()
    start, rss0 = take_snapshot(), rss_bytes()
    traced0 = tracemalloc.get_traced_memory()[0]
    for k in range(1, passes + 1):
        await one_pass(k)
    gc.collect()
    end, rss1 = take_snapshot(), rss_bytes()
    traced1, peak = tracemalloc.get_traced_memory()
    frames_total = n * len(pipes) * passes
    return {
        "frames_between_snapshots": frames_total,
        "traced_start_bytes": traced0, "traced_end_bytes": traced1, "traced_growth_bytes": traced1 - traced0,
        "traced_growth_bytes_per_million_frames": round((traced1 - traced0) / frames_total * 1e6),
        "traced_peak_bytes": peak,
        "rss_start_mb": round(rss0 / 1e6, 1), "rss_end_mb": round(rss1 / 1e6, 1),
        "rss_growth_mb": round((rss1 - rss0) / 1e6, 1),
        "top_growth": top_growth(start, end, 10),
    }


def memory(n: int, symbols: int, passes: int) -> dict[str, Any]:
    tracemalloc.start(1)
    try:
        return asyncio.run(_memory_passes(n, symbols, passes))
    finally:
        tracemalloc.stop()


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "versions": {p: version(p) for p in ("orjson", "aiohttp", "aiokafka", "prometheus-client")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory (collector_bench.json)")
    p.add_argument("--frames", type=int, default=200_000, help="frames per exchange per throughput run")
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-frames", type=int, default=50_000, help="frames per exchange per memory pass")
    p.add_argument("--memory-passes", type=int, default=6)
    args = p.parse_args(argv)
    # Whole rounds of symbols, so that consecutive passes continue every symbol's trade ids.
    args.memory_frames -= args.memory_frames % args.symbols
    command = "python -m benchmarks.collector_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    report: dict[str, Any] = {
        "benchmark": "collector", "command": command, "target_frames_per_s": TARGET_FPS,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "rss_after_imports_mb": round(rss_bytes() / 1e6, 1),  # interpreter + aiohttp, aiokafka, prometheus
    }
    # Memory first: the throughput runs' frame lists would otherwise inflate the RSS figures.
    report["memory"] = memory(args.memory_frames, args.symbols, args.memory_passes)
    report["throughput"] = {ex: throughput(ex, args.frames, args.symbols, args.repeats) for ex in EXCHANGES}
    report["meets_target"] = all(t["meets_target"] for t in report["throughput"].values())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "collector_bench.json"
    path.write_text(json.dumps(report, indent=1) + "\n")

    lines = [f"command: {command}"]
    for ex, t in report["throughput"].items():
        lines.append(f"{ex:9s} parse {t['parse_frames_per_s']:>9,} frames/s ({t['parse_us_per_frame']} us)   "
                     f"pipeline {t['pipeline_frames_per_s']:>9,} frames/s ({t['pipeline_us_per_frame']} us)   "
                     f"via socket {t['socket_frames_per_s']:>9,} frames/s   "
                     f"target {TARGET_FPS:,}: {'met' if t['meets_target'] else 'MISSED'}")
    m = report["memory"]
    lines.append(f"memory: {m['frames_between_snapshots']:,} frames between snapshots; traced "
                 f"{m['traced_start_bytes']:,} -> {m['traced_end_bytes']:,} B ({m['traced_growth_bytes']:+,} B); "
                 f"RSS {m['rss_start_mb']} -> {m['rss_end_mb']} MB")
    lines.append(f"wrote {path}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if report["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
