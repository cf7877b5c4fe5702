"""Units of `feed file` and `replay`: Parquet reading, speed and range parsing, range cursors.

The end-to-end proof that replay equals live is tests/integration/test_replay.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiokafka.structs import ConsumerRecord

from app.cli import parse_speed
from app.replay import Bound, ReplayOptions, _Cursor, parse_bound
from app.tickfiles import read_ticks

ROWS = [
    {"timestamp": 1_700_000_000_000, "symbol": "BTCUSDT", "price": 50_000.5, "quantity": 0.25, "side": "buy"},
    {"timestamp": 1_700_000_000_500, "symbol": "ETHUSDT", "price": 3_000.0, "quantity": 1.5, "side": None},
    {"timestamp": 1_700_000_000_100, "symbol": "BTCUSDT", "price": 50_001.0, "quantity": 0.1, "side": "sell"},
]


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    lines = ["timestamp,symbol,price,quantity,side"]
    lines += [f"{r['timestamp']},{r['symbol']},{r['price']},{r['quantity']},{r['side'] or ''}" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def columns(path: Path) -> tuple[list[object], ...]:
    t = read_ticks(path)
    return (t.timestamp.tolist(), [t.symbols[i] for i in t.symbol], t.price.tolist(), t.quantity.tolist(),
            t.side.tolist())


def test_parquet_and_csv_read_the_same(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "t.parquet")
    assert columns(tmp_path / "t.parquet") == columns(write_csv(tmp_path / "t.csv", ROWS))
    assert columns(tmp_path / "t.parquet")[0] == sorted(r["timestamp"] for r in ROWS)  # ordered by time


def test_newest_first_file_keeps_the_order_of_same_millisecond_trades(tmp_path: Path) -> None:
    """Fills of one order share a millisecond: a newest-first dump read back gives the oldest-first order."""
    t0 = 1_700_000_000_000
    oldest_first = [{"timestamp": t0 + dt, "symbol": "BTCUSDT", "price": p, "quantity": 1.0, "side": "buy"}
                    for dt, p in ((0, 1.0), (5, 2.0), (5, 3.0), (5, 4.0), (9, 5.0))]
    forward = columns(write_csv(tmp_path / "a.csv", oldest_first))
    assert columns(write_csv(tmp_path / "b.csv", oldest_first[::-1])) == forward
    assert forward[2] == [1.0, 2.0, 3.0, 4.0, 5.0]
    # A file merely out of order somewhere is not reversed: the stable sort keeps its row order.
    shuffled = [oldest_first[i] for i in (4, 0, 1, 2, 3)]
    assert columns(write_csv(tmp_path / "c.csv", shuffled))[2] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_parquet_timestamp_type_and_qty_alias(tmp_path: Path) -> None:
    table = pa.table({
        "Timestamp": pa.array(np.array([r["timestamp"] for r in ROWS], dtype="datetime64[ms]")),
        "symbol": [r["symbol"] for r in ROWS], "price": [r["price"] for r in ROWS],
        "qty": [r["quantity"] for r in ROWS],
    })
    pq.write_table(table, tmp_path / "t.parquet")
    t = read_ticks(tmp_path / "t.parquet")
    assert t.timestamp.tolist() == sorted(r["timestamp"] for r in ROWS)
    assert sorted(t.quantity.tolist()) == sorted(r["quantity"] for r in ROWS)


def test_parquet_bad_rows_are_rejected_with_reasons(tmp_path: Path) -> None:
    rows = [*ROWS, {**ROWS[0], "price": -1.0}, {**ROWS[0], "symbol": None}, {**ROWS[0], "side": "hold"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    t = read_ticks(tmp_path / "t.parquet")
    assert len(t) == len(ROWS) and t.rows == len(rows)
    assert dict(t.rejected) == {"not_positive": 1, "missing_field": 1, "bad_side": 1}


def test_parquet_missing_column_is_an_error(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "price"} for r in ROWS]),
                   tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="price"):
        read_ticks(tmp_path / "t.parquet")


def test_directory_mixes_formats(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ROWS[:2])
    pq.write_table(pa.Table.from_pylist(ROWS[2:]), tmp_path / "b.parquet")
    assert len(read_ticks(tmp_path)) == len(ROWS)


@pytest.mark.parametrize(("text", "speed"), [("max", None), ("MAX", None), ("1x", 1.0), ("10x", 10.0), ("0.5", 0.5)])
def test_parse_speed(text: str, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["fast", "0x", "-2x", ""])
def test_parse_speed_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_speed(text)


NOW = 1_800_000_000_000


@pytest.mark.parametrize(("text", "bound"), [
    ("earliest", Bound("earliest")), ("latest", Bound("latest")), ("now", Bound("latest")),
    ("offset:17", Bound("offset", 17)), ("1700000000000", Bound("time", 1_700_000_000_000)),
    ("2023-11-14T22:13:20Z", Bound("time", 1_700_000_000_000)), ("-7d", Bound("time", NOW - 7 * 86_400_000)),
    ("-36h", Bound("time", NOW - 36 * 3_600_000)), ("-1.5m", Bound("time", NOW - 90_000)),
])
def test_parse_bound(text: str, bound: Bound) -> None:
    assert parse_bound(text, NOW) == bound


@pytest.mark.parametrize("text", ["offset:-1", "offset:x", "yesterday", "1700000000000.5"])
def test_parse_bound_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bound(text, NOW)


def options(**kw: object) -> ReplayOptions:
    base: dict[str, object] = dict(topic="ticks", start=Bound("earliest"), end=Bound("latest"), app_id="a-replay-x",
                                   alerts_topic="a-replay-x-alerts", live_alerts_topic="alerts")
    return ReplayOptions(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [
    {"alerts_topic": "alerts"}, {"alerts_topic": "ticks"}, {"labels": Path("l.csv")},
    {"warmup_ms": 60_000}, {"batch_size": 0},
])
def test_replay_options_refuse(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        options(**kw)


def rec(offset: int, ts: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("ticks", 0, offset, ts, 0, None, b"{}", None, 0, 2, [])


def test_cursor_time_range_with_warmup() -> None:
    # Broker answered the time lookup with an earlier batch start: records before the warm-up
    # start are skipped, warm-up records until the range start, live until the inclusive end.
    c = _Cursor(seek=0, skip_before_ts=100, live_from_ts=200, end_ts=300)
    kinds = [c.classify(rec(i, ts)) for i, ts in enumerate([50, 99, 100, 150, 199, 200, 250, 300, 301, 302])]
    assert kinds[:9] == ["skip", "skip", "warm", "warm", "warm", "live", "live", "live", "end"]
    assert c.done and (c.live_from_offset, c.last_offset) == (5, 7)


def test_cursor_first_record_at_or_after_start_opens_the_range() -> None:
    # Kafka semantics: the range starts at the first record at/after the time, later records
    # with older timestamps (CreateTime is the producer's clock) are not skipped.
    c = _Cursor(seek=0, skip_before_ts=100)
    assert [c.classify(rec(i, ts)) for i, ts in enumerate([90, 110, 95])] == ["skip", "live", "live"]


def test_cursor_offset_end_is_exclusive() -> None:
    c = _Cursor(seek=3, end_offset=5)
    assert [c.classify(rec(i, 0)) for i in (3, 4, 5)] == ["live", "live", "end"]
