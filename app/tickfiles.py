"""Tick and label files for offline evaluation: CSV (optionally gzip), one file or a directory.

The formats are those of the evaluation notes. Every row goes through
:func:`models.ticks.tick_from_dict`, the validation the worker applies to Kafka records,
so a backtest accepts and rejects exactly what the live system would; rejected rows are
counted by the same stable reason codes.

Why the files are read into columns and sorted instead of streamed through a heap merge:
exported trade files are often *not* in ascending time order (API dumps are frequently
newest-first, hand-concatenated files repeat ranges), and a merge of per-file iterators is
only correct when every file is sorted. Reading a file is the only way to know, so each
file is parsed into compact numpy columns (about 30 bytes per tick, no Python object per
tick) and the data set is ordered with one stable sort on the timestamp. Ties keep file
order (files sorted by name) then row order, which is exactly what a heap merge keyed on
``(timestamp, file index)`` of sorted files would give, and faster. A file whose rows run
backwards in time is reversed first, so its same-millisecond trades keep their real order. ``Tick`` objects are
built one micro-batch at a time (:meth:`TickTable.batches`).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.errors import BadTickError
from models.evaluation import Event
from models.ticks import Side, Tick, tick_from_dict

logger = logging.getLogger(__name__)

#: Accepted names of the quantity column, in order of preference when a file has several.
QUANTITY_COLUMNS = ("quantity", "qty", "amount", "volume")
_SIDES: tuple[Side | None, ...] = (None, "buy", "sell")
_SIDE_CODE = {None: 0, "buy": 1, "sell": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
TICK_FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
PARQUET_BATCH_ROWS = 65_536


def parse_time_ms(text: str) -> int | float:
    """``text`` as ms since the epoch: digits are ms, anything else ISO-8601 (naive = UTC).

    A number with a fraction is returned as a float so that :func:`tick_from_dict` rejects
    it with its own reason (``bad_timestamp``) rather than this module guessing a unit.

    >>> parse_time_ms("1700000000000"), parse_time_ms("2023-11-14T22:13:20.5Z")
    (1700000000000, 1700000000500)
    """
    s = text.strip()
    if s.isascii() and s.isdigit():
        return int(s)
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise BadTickError("bad_timestamp", f"not ms since the epoch nor ISO-8601: {s[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _MS


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadTickError("wrong_type", f"{name} must be a number, got {text[:40]!r}") from None


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def tick_files(path: Path) -> list[Path]:
    """The tick files of a data set: ``path`` itself, or every ``*.csv[.gz]``/``*.parquet`` below it, by name."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or directory: {path}")
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(TICK_FILE_SUFFIXES)
    )
    if not files:
        raise FileNotFoundError(f"no .csv, .csv.gz or .parquet files in {path}")
    return files


def _columns(header: Sequence[str], path: Path) -> dict[str, int]:
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    idx = {n: i for i, n in reversed(list(enumerate(names)))}  # first occurrence wins
    qty = [q for q in QUANTITY_COLUMNS if q in idx]
    missing = [n for n in ("timestamp", "symbol", "price") if n not in idx] + ([] if qty else ["quantity"])
    if missing:
        raise ValueError(f"{path}: header lacks {missing} (need timestamp, symbol, price and one of "
                         f"{', '.join(QUANTITY_COLUMNS)}); got {names}")
    if len(qty) > 1:
        logger.warning("%s: several quantity columns %s, using %r", path, qty, qty[0])
    cols = {n: idx[n] for n in ("timestamp", "symbol", "price")}
    cols["quantity"] = idx[qty[0]]
    for opt in ("side", "exchange"):
        if opt in idx:
            cols[opt] = idx[opt]
    return cols


@dataclass
class TickTable:
    """All valid ticks of a data set as columns in processing order (timestamp, then file, then row)."""

    timestamp: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    quantity: npt.NDArray[np.float64]
    symbol: npt.NDArray[np.int32]  # index into ``symbols``
    side: npt.NDArray[np.int8]  # 0 unknown, 1 buy, 2 sell
    exchange: npt.NDArray[np.int32]  # index into ``exchanges``
    symbols: list[str]
    exchanges: list[str | None]
    files: list[Path] = field(default_factory=list)
    rows: int = 0  # data rows read (valid + rejected)
    rejected: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return int(self.timestamp.size)

    def batches(self, size: int) -> Iterator[tuple[int, list[Tick]]]:
        """``(offset, ticks)`` micro-batches in order; Tick objects exist for one batch at a time."""
        syms, exchs = self.symbols, self.exchanges
        for lo in range(0, len(self), size):
            sl = slice(lo, lo + size)
            cols = (self.symbol[sl].tolist(), self.price[sl].tolist(), self.quantity[sl].tolist(),
                    self.timestamp[sl].tolist(), self.side[sl].tolist(), self.exchange[sl].tolist())
            yield lo, [Tick(syms[s], p, q, t, _SIDES[d], exchs[e])
                       for s, p, q, t, d, e in zip(*cols, strict=True)]

    def records(self) -> Iterator[dict[str, Any]]:
        """Wire-form tick dicts in order (what a feed sends), built lazily."""
        for _, ticks in self.batches(10_000):
            for tick in ticks:
                yield tick.to_dict()

    def spans(self) -> dict[str, tuple[int, int]]:
        """Each symbol's first and last tick time (the observed span of the evaluation notes)."""
        out: dict[str, tuple[int, int]] = {}
        if not len(self):
            return out
        codes, first = np.unique(self.symbol, return_index=True)
        _, last_rev = np.unique(self.symbol[::-1], return_index=True)
        last = len(self) - 1 - last_rev
        for c, a, b in zip(codes.tolist(), first.tolist(), last.tolist(), strict=True):
            out[self.symbols[c]] = (int(self.timestamp[a]), int(self.timestamp[b]))
        return out


class TickTableBuilder:
    """Accumulates validated rows of all files in compact typed arrays."""

    def __init__(self) -> None:
        self.ts: array[int] = array("q")
        self.price: array[float] = array("d")
        self.qty: array[float] = array("d")
        self.sym: array[int] = array("i")
        self.side: array[int] = array("b")
        self.exch: array[int] = array("i")
        self.sym_code: dict[str, int] = {}
        self.exch_code: dict[str | None, int] = {None: 0}
        self.rows = 0
        self.rejected: Counter[str] = Counter()

    def add_file(self, path: Path) -> None:
        before, rej_before = len(self.ts), sum(self.rejected.values())
        if path.name.lower().endswith(".parquet"):
            self._add_parquet(path)
        else:
            self._add_csv(path)
        if self._newest_first(before):
            self._reverse_from(before)
            logger.info("%s: newest first; read in reverse", path)
        logger.info("%s: %d ticks, %d rejected", path, len(self.ts) - before,
                    sum(self.rejected.values()) - rej_before)

    def _newest_first(self, start: int) -> bool:
        """Whether the ticks added since ``start`` run backwards in time (an API dump, newest first)."""
        ts = np.frombuffer(self.ts, dtype=np.int64)[start:]
        steps = np.diff(ts)
        return bool(steps.size) and bool((steps <= 0).all()) and bool((steps < 0).any())

    def _reverse_from(self, start: int) -> None:
        """Reverse the rows added since ``start``: trades sharing a millisecond (fills of one order)
        then keep their original order through the stable sort, as in the same file oldest first."""
        for ints in (self.ts, self.sym, self.side, self.exch):
            ints[start:] = ints[start:][::-1]
        for floats in (self.price, self.qty):
            floats[start:] = floats[start:][::-1]

    def _add_row(self, where: str, rec: dict[str, Any] | BadTickError) -> None:
        """Validate and keep one row, or count its rejection (first three of a reason logged)."""
        try:
            if isinstance(rec, BadTickError):
                raise rec
            self._add(rec)
        except BadTickError as exc:
            self.rejected[exc.reason] += 1
            if self.rejected[exc.reason] <= 3:
                logger.warning("%s rejected: %s", where, exc)

    def _add_parquet(self, path: Path) -> None:
        """Parquet rows through the same validation as CSV rows, one record batch of columns at a time.

        A timestamp column of Arrow timestamp type is converted to ms; numeric columns keep their
        values, so a wrong type (a string price) is rejected by :func:`tick_from_dict`.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        cols = _columns(pf.schema_arrow.names, path)
        names = pf.schema_arrow.names
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[names[i] for i in cols.values()]):
            columns: dict[str, list[Any]] = {}
            for name, i in cols.items():
                arr = batch.column(names[i])
                if pa.types.is_timestamp(arr.type):
                    arr = arr.cast(pa.timestamp("ms", tz=arr.type.tz)).cast(pa.int64())
                columns[name] = arr.to_pylist()
            for i in range(batch.num_rows):
                self.rows += 1
                rec = {k: v[i] for k, v in columns.items() if v[i] is not None or k not in ("side", "exchange")}
                missing = [k for k, v in rec.items() if v is None]
                self._add_row(f"{path} row {self.rows}",
                              BadTickError("missing_field", missing[0]) if missing else rec)

    def _add_csv(self, path: Path) -> None:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                logger.warning("%s: empty file", path)
                return
            cols = _columns(header, path)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line: not a record
                self.rows += 1
                try:
                    rec: dict[str, Any] | BadTickError = self._record(row, cols)
                except BadTickError as exc:
                    rec = exc
                self._add_row(f"{path} line {reader.line_num}", rec)

    @staticmethod
    def _record(row: list[str], cols: dict[str, int]) -> dict[str, Any]:
        rec: dict[str, Any] = {}
        for name, i in cols.items():
            text = row[i].strip() if i < len(row) else ""
            if not text:
                if name in ("side", "exchange"):
                    continue
                raise BadTickError("missing_field", name)
            if name in ("price", "quantity"):
                rec[name] = _number(name, text)
            elif name == "timestamp":
                rec[name] = parse_time_ms(text)
            else:
                rec[name] = text
        return rec

    def _add(self, rec: dict[str, Any]) -> None:
        self.add_tick(tick_from_dict(rec))

    def add_tick(self, tick: Tick) -> None:
        """Keep one already validated tick (the replay's ticks come validated off Kafka)."""
        code = self.sym_code.setdefault(tick.symbol, len(self.sym_code))
        exch = self.exch_code.setdefault(tick.exchange, len(self.exch_code))
        self.ts.append(tick.timestamp)
        self.price.append(tick.price)
        self.qty.append(tick.quantity)
        self.sym.append(code)
        self.side.append(_SIDE_CODE[tick.side])
        self.exch.append(exch)

    def table(self, files: list[Path], *, by_time: bool = True) -> TickTable:
        """The columns ordered by time (stable), or in the order added when ``by_time`` is False."""
        ts = np.frombuffer(self.ts, dtype=np.int64)
        order = np.argsort(ts, kind="stable") if by_time else np.arange(ts.size)
        return TickTable(
            timestamp=ts[order],
            price=np.frombuffer(self.price, dtype=np.float64)[order],
            quantity=np.frombuffer(self.qty, dtype=np.float64)[order],
            symbol=np.frombuffer(self.sym, dtype=np.int32)[order],
            side=np.frombuffer(self.side, dtype=np.int8)[order],
            exchange=np.frombuffer(self.exch, dtype=np.int32)[order],
            symbols=list(self.sym_code),
            exchanges=list(self.exch_code),
            files=files,
            rows=self.rows,
            rejected=self.rejected,
        )


def read_ticks(path: Path) -> TickTable:
    """Read, validate and order every tick of a file or directory (see the module docstring)."""
    files = tick_files(path)
    builder = TickTableBuilder()
    for f in files:
        builder.add_file(f)
    bad = sum(builder.rejected.values())
    if not builder.ts:
        raise ValueError(f"no valid ticks in {path} ({builder.rows} rows; rejected: {dict(builder.rejected)})")
    if bad > 0.01 * builder.rows:  # a unit or format mismatch, more likely than bad data
        logger.warning("%d of %d rows rejected (%s): check the timestamp unit (ms) and the side values (buy/sell)",
                       bad, builder.rows, dict(builder.rejected))
    return builder.table(files)


def _canonical(symbol: str) -> str:
    return "".join(ch for ch in symbol.upper() if ch.isalnum())


def read_labels(path: Path, known_symbols: Sequence[str] = ()) -> list[Event]:
    """Label windows from a ``symbol,start,end[,scenario]`` CSV (ISO-8601 UTC or ms).

    Labels are ground truth, so a malformed row is an error (``ValueError`` with the line),
    not a skipped record. When a label's symbol is not among ``known_symbols`` but exactly
    one known symbol is the same up to case and separators (``BRD/BTC`` vs ``BRDBTC``), the
    label is mapped to it: labels and trades often come from different exports.
    """
    by_canon: dict[str, list[str]] = {}
    for s in known_symbols:
        by_canon.setdefault(_canonical(s), []).append(s)
    known = set(known_symbols)
    out: list[Event] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower().lstrip("\ufeff") for h in next(reader, [])]
        missing = [n for n in ("symbol", "start", "end") if n not in header]
        if missing:
            raise ValueError(f"{path}: label header lacks {missing}; got {header}")
        col = {n: header.index(n) for n in ("symbol", "start", "end", "scenario") if n in header}
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            where = f"{path} line {reader.line_num}"
            try:
                symbol = row[col["symbol"]].strip()
                start, end = (parse_time_ms(row[col[n]]) for n in ("start", "end"))
                scenario = row[col["scenario"]].strip() if "scenario" in col and col["scenario"] < len(row) else ""
            except (IndexError, BadTickError) as exc:
                raise ValueError(f"{where}: {exc}") from None
            if not symbol or start != int(start) or end != int(end) or end < start:
                raise ValueError(f"{where}: need a symbol and whole-ms start <= end, got {row}")
            if known and symbol not in known and len(by_canon.get(_canonical(symbol), [])) == 1:
                mapped = by_canon[_canonical(symbol)][0]
                logger.info("label symbol %r mapped to tick symbol %r", symbol, mapped)
                symbol = mapped
            out.append(Event(symbol, int(start), int(end), scenario))
    return out
