"""``feed exchange`` options and failure exits (no broker needed)."""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import pytest

from app.broker import free_port
from app.collector import cli
from app.collector.memory import SnapshotDumper, top_growth
from app.settings import Settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_symbols_accept_spaces_and_commas() -> None:
    config = cli.config_from_args(parse_args(["--exchange", "binance", "--symbols", "BTCUSDT,ETHUSDT", "SOLUSDT",
                                              "--url", "ws://127.0.0.1:1/stream", "--backoff-max", "5"]))
    assert config.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert (config.url, config.backoff.max_s) == ("ws://127.0.0.1:1/stream", 5.0)


@pytest.mark.parametrize("argv", [["--exchange", "okx", "--symbols", "BTC-USDT", "--per-connection", "5000"],
                                  ["--exchange", "okx", "--symbols", ","]])
def test_bad_options_exit_2_before_any_kafka_work(argv: list[str], caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(broker_url=f"kafka://127.0.0.1:{free_port()}")  # nothing listens there
    t0 = time.monotonic()
    assert cli.run(settings, parse_args(argv)) == 2
    assert time.monotonic() - t0 < 2 and "feed exchange" in caplog.text


def test_unknown_exchange_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--exchange", "kraken", "--symbols", "X"])


def test_tracemalloc_snapshots_are_written_and_name_the_growing_site(tmp_path: Path) -> None:
    dumper = SnapshotDumper(tmp_path / "snaps", interval_s=3600)
    dumper.start()
    try:
        kept = [bytearray(1000) for _ in range(500)]  # ~0.5 MB allocated on this line
        second = dumper.dump()
    finally:
        dumper.stop()
    assert len(kept) == 500 and len(dumper.paths) == 3 and not tracemalloc.is_tracing()
    first = tracemalloc.Snapshot.load(str(dumper.paths[0]))
    growth = top_growth(first, tracemalloc.Snapshot.load(str(second)), limit=3)
    assert growth[0]["site"].endswith(f"test_cli.py:{kept_line()}") and growth[0]["size_diff_bytes"] > 400_000


def kept_line() -> int:
    import inspect

    src, start = inspect.getsourcelines(test_tracemalloc_snapshots_are_written_and_name_the_growing_site)
    return start + next(i for i, line in enumerate(src) if "bytearray(1000)" in line)
