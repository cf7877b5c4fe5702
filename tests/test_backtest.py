"""Tests of ``cryptotrace backtest`` (app.backtest, app.tickfiles, app.plots).

One synthetic data set (4 symbols x 3 h, a pump, a flash crash and a wash-trading spike) is
written in two layouts: one multi-symbol gzip file with millisecond timestamps, and a
directory of per-symbol files with different quantity column names, ISO timestamps, a
gzip file and a file in descending time order. Both must give the alerts that
``Pipeline.process`` gives on the same ticks directly, byte for byte.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.backtest import CI_METRICS, BacktestOptions, replay_alerts, run_backtest, threshold_curve
from app.codec import encode
from app.settings import Settings
from app.tickfiles import parse_time_ms, read_labels, read_ticks
from models.alerts import Alert
from models.pipeline import Pipeline, PipelineConfig, SymbolSnapshot
from models.synthetic import Injection, Label, SymbolProfile, TickBatch, generate
from models.training import _Replayer

T0 = 1_700_000_000_000
MIN = 60_000
PROFILES = [
    SymbolProfile("AAAUSDT", 50.0, 0.8, 2.0, True),
    SymbolProfile("BBBUSDT", 2.0, 0.5, 40.0, True),
    SymbolProfile("DDD/BTC", 3e-5, 0.2, 500.0, False),
    SymbolProfile("EEEBTC", 2e-4, 0.3, 80.0, False),
]
# Rows every file layout adds, with the reason each must be rejected for.
BAD_ROWS = [
    ({"price": "-1"}, "not_positive"),
    ({"price": "abc"}, "wrong_type"),
    ({"timestamp": "yesterday"}, "bad_timestamp"),
    ({"timestamp": "1700000000"}, "bad_timestamp"),  # seconds, not ms
    ({"side": "hold"}, "bad_side"),
    ({"symbol": ""}, "missing_field"),
]
EXPECTED_REJECTED = {"bad_side": 1, "bad_timestamp": 2, "missing_field": 1, "not_positive": 1, "wrong_type": 1}


@functools.cache
def dataset() -> tuple[TickBatch, tuple[Label, ...]]:
    injections = [
        Injection("flash_crash", "AAAUSDT", T0 + 70 * MIN),
        Injection("pump_and_dump", "DDD/BTC", T0 + 90 * MIN, {"pre_accumulation": 0.0}),
        Injection("volume_spike_flat", "EEEBTC", T0 + 120 * MIN),
    ]
    batch, labels = generate(PROFILES, start_ms=T0, duration_s=3 * 3600, injections=injections, seed=11)
    return batch, tuple(labels)


@functools.cache
def direct_alert_lines() -> tuple[bytes, ...]:
    """The reference: the same ticks straight through Pipeline.process (stat-only, worker defaults)."""
    batch, _ = dataset()
    ticks = list(batch.ticks())
    pipeline = Pipeline(PipelineConfig(alert_threshold=0.5, cooldown_s=300.0))
    snaps: dict[str, SymbolSnapshot] = {}
    alerts: list[Alert] = []
    for lo in range(0, len(ticks), 1000):
        alerts.extend(pipeline.process(snaps, ticks[lo:lo + 1000]).alerts)
    alerts.sort(key=lambda a: (a.event_time, a.symbol))
    return tuple(encode(a.to_dict()) for a in alerts)


def iso(ms: int) -> str:
    dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def rows_of(batch: TickBatch, iso_time: bool = False) -> list[dict[str, str]]:
    return [{"timestamp": iso(r["timestamp"]) if iso_time else str(r["timestamp"]), "symbol": r["symbol"],
             "price": repr(r["price"]), "quantity": repr(r["quantity"]), "side": r["side"],
             "exchange": "synthetic", "trade_id": str(r["trade_id"])} for r in batch.records()]


def bad_rows(symbol: str) -> list[dict[str, str]]:
    good = {"timestamp": str(T0 + 5000), "symbol": symbol, "price": "1.0", "quantity": "1.0", "side": "buy",
            "exchange": "x", "trade_id": "0"}
    return [{**good, **change} for change, _ in BAD_ROWS]


def write_csv(path: Path, rows: list[dict[str, str]], qty_name: str = "qty", header: list[str] | None = None) -> None:
    header = header or ["timestamp", "symbol", "price", qty_name, "side", "exchange", "trade_id"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r["quantity" if h.lower() == qty_name.lower() else h.lower()] if h != "extra" else "e"
                    for h in header])
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backtest-data")
    batch, labels = dataset()
    write_csv(root / "all.csv.gz", rows_of(batch) + bad_rows("AAAUSDT"))

    d = root / "by_symbol"
    d.mkdir()
    write_csv(d / "AAAUSDT.csv", rows_of(batch.select("AAAUSDT"), iso_time=True), qty_name="amount")
    write_csv(d / "BBBUSDT.csv.gz", rows_of(batch.select("BBBUSDT")) + bad_rows("BBBUSDT"), qty_name="volume")
    write_csv(d / "DDD-BTC.csv", rows_of(batch.select("DDD/BTC")), qty_name="quantity",
              header=["Symbol", "Price", "Quantity", "SIDE", "Timestamp", "extra"])
    write_csv(d / "EEEBTC.csv", rows_of(batch.select("EEEBTC"))[::-1])  # newest first: must be sorted
    (d / "README.txt").write_text("not a tick file")

    with (root / "labels.csv").open("w") as fh:
        fh.write("symbol,start,end,scenario,note\n")
        for i, lab in enumerate(labels):
            sym = "eee/btc" if lab.symbol == "EEEBTC" else lab.symbol  # mapped to the tick symbol
            start = iso(lab.start_ms) if i % 2 else str(lab.start_ms)
            fh.write(f"{sym},{start},{lab.end_ms},{lab.scenario},x\n")
        fh.write(f"ZZZUSDT,{T0},{T0 + MIN},pump_and_dump,no ticks\n")
    return {"gz": root / "all.csv.gz", "dir": d, "labels": root / "labels.csv", "root": root}


def settings_for(tmp: Path) -> Settings:
    """Worker settings with an empty model directory: the statistical layer alone, threshold 0.5."""
    return Settings(model_dir=tmp / "no-models", model_version=None, alert_threshold=None, cooldown_s=300.0,
                    batch_size=1000)


@pytest.fixture(scope="module")
def runs(files: dict[str, Path]) -> dict[str, tuple[Path, dict[str, Any]]]:
    out = {}
    for layout in ("gz", "dir"):
        dest = files["root"] / f"out-{layout}"
        opts = BacktestOptions(ticks=files[layout], labels=files["labels"], out=dest, bootstrap=300,
                               progress=False)
        out[layout] = (dest, run_backtest(settings_for(files["root"]), opts))
    return out


@pytest.mark.parametrize("layout", ["gz", "dir"])
def test_alerts_equal_the_pipeline_run_directly(runs: dict[str, tuple[Path, dict[str, Any]]], layout: str) -> None:
    dest, report = runs[layout]
    lines = (dest / "alerts.jsonl").read_bytes().splitlines()
    assert lines and tuple(lines) == direct_alert_lines()
    assert report["alerts"] == len(lines) and report["replay_matches_pipeline"]
    assert json.loads(lines[0])["model_version"] == "stat-only"


def test_both_layouts_give_identical_outputs(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    (dg, rg), (dd, rd) = runs["gz"], runs["dir"]
    assert (dg / "alerts.jsonl").read_bytes() == (dd / "alerts.jsonl").read_bytes()
    for key in ("events", "detected", "recall", "precision", "f1", "ci95", "threshold_curve", "per_event"):
        assert rg[key] == rd[key], key
    assert rg["files"] == 1 and rd["files"] == 4


@pytest.mark.parametrize("layout", ["gz", "dir"])
def test_report_has_metrics_intervals_and_run_facts(runs: dict[str, tuple[Path, dict[str, Any]]], layout: str) -> None:
    dest, returned = runs[layout]
    report = json.loads((dest / "report.json").read_text())
    assert report == json.loads(json.dumps(returned))
    for key in ("events", "detected", "recall", "precision", "f1", "false_alarms_per_symbol_day", "delay_median_s",
                "delay_p90_s", "ticks_processed", "rejected", "symbols", "symbol_days", "runtime_s", "ticks_per_s",
                "model_version", "threshold", "command", "bootstrap"):
        assert key in report, key
    for key in CI_METRICS:
        lo, hi = report["ci95"][key]
        assert lo <= hi, key
    assert report["ci95"]["recall"][0] <= report["recall"] <= report["ci95"]["recall"][1]
    assert report["ticks_processed"] == len(dataset()[0])
    assert report["rejected"] == EXPECTED_REJECTED and report["rows_read"] == len(dataset()[0]) + len(BAD_ROWS)
    assert report["symbols"] == 4 and report["symbol_days"] == pytest.approx(4 * 3 / 24, abs=0.01)
    assert report["model_version"] == "stat-only" and report["threshold"] == 0.5
    assert report["labels"] == {"rows": 4, "scored": 3, "ignored": {"unknown_symbol": 1, "outside_span": 0}}
    assert report["command"]["ticks"] == str(runs[layout][0].parent / ("all.csv.gz" if layout == "gz" else "by_symbol"))


def test_the_pump_is_detected(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _, report = runs["gz"]
    pump = [e for e in report["per_event"] if e["scenario"] == "pump_and_dump"]
    assert len(pump) == 1 and pump[0]["detected"] and pump[0]["symbol"] == "DDD/BTC"
    assert report["by_scenario"]["pump_and_dump"]["recall"] == 1.0
    assert report["delay_median_s"] is not None


def test_plots_are_png(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    dest, report = runs["dir"]
    pngs = sorted((dest / "plots").glob("*.png"))
    assert len(pngs) == 1 + report["events"] and {p.name for p in pngs} == set(report["plots"])
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_curve_replay_matches_the_operating_point(runs: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _, report = runs["gz"]
    at = [c for c in report["threshold_curve"] if c["threshold"] == report["threshold"]]
    assert len(at) == 1
    for key in ("detected", "recall", "precision", "f1", "episodes", "false_alarms_per_symbol_day"):
        assert at[0][key] == report[key], key
    # Not monotone: at a low threshold alarms run together into episodes that start before the window.
    thresholds = [c["threshold"] for c in report["threshold_curve"]]
    assert thresholds == sorted(thresholds) and len(thresholds) > 100
    assert report["threshold_curve"][0]["episodes"] > report["episodes"]


def _row_by_row_replay(symbols: np.ndarray, times: np.ndarray, scores: np.ndarray, threshold: float,
                       cooldown_s: float) -> list[tuple[str, int]]:
    """Reference: the worker's cooldown applied row by row (rows in time order)."""
    last: dict[str, int] = {}
    out: list[tuple[str, int]] = []
    for i in np.flatnonzero(scores >= threshold):
        sym, t = str(symbols[i]), int(times[i])
        if sym not in last or t - last[sym] >= cooldown_s * 1000.0:
            last[sym] = t
            out.append((sym, t))
    return out


@pytest.mark.parametrize("cooldown_s", [0.0, 0.05, 30.0])
def test_replay_equals_a_row_by_row_replay(cooldown_s: float) -> None:
    rng = np.random.default_rng(3)
    n = 4000
    syms = np.array(["A", "B", "C"], dtype=object)[rng.integers(0, 3, n)]
    times = np.sort(rng.integers(T0, T0 + 600_000, n))
    scores = rng.random(n)
    series = {s: (times[syms == s], np.ones(int((syms == s).sum())), scores[syms == s]) for s in ("A", "B", "C")}
    for thr in (0.3, 0.9):
        assert sorted(replay_alerts(series, thr, cooldown_s)) == sorted(
            _row_by_row_replay(syms, times, scores, thr, cooldown_s))
        # training's replayer (threshold choice over many thresholds) gives the same alerts
        assert sorted(_Replayer(syms, times, cooldown_s).alerts(scores, thr)) == sorted(
            _row_by_row_replay(syms, times, scores, thr, cooldown_s))


def test_threshold_curve_skips_zero() -> None:
    series = {"A": (np.array([T0, T0 + 1]), np.ones(2), np.array([0.0, 0.7]))}
    curve = threshold_curve(series, [], {"A": (T0, T0 + 1)}, 300.0, 1800.0, 0.0)
    assert curve and all(c["threshold"] > 0 for c in curve)


def test_cli_subprocess(files: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "CRYPTOTRACE_MODEL_DIR": str(tmp_path / "none"), "CRYPTOTRACE_LOG_LEVEL": "warning"}
    for k in ("CRYPTOTRACE_MODEL_VERSION", "CRYPTOTRACE_ALERT_THRESHOLD", "CRYPTOTRACE_COOLDOWN_S"):
        env.pop(k, None)
    out = tmp_path / "cli-out"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "backtest", "--ticks", str(files["dir"]), "--labels", str(files["labels"]),
         "--out", str(out), "--batch-size", "777", "--max-plots", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ticks_processed"] == len(dataset()[0]) and summary["rejected_total"] == len(BAD_ROWS)
    assert tuple((out / "alerts.jsonl").read_bytes().splitlines()) == direct_alert_lines()  # batch size is moot
    assert len(list((out / "plots").glob("*.png"))) == 2

    bad = subprocess.run(
        [sys.executable, "-m", "app.cli", "backtest", "--ticks", str(tmp_path / "missing"), "--labels",
         str(files["labels"]), "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "backtest failed" in bad.stderr


def test_parse_time_ms() -> None:
    assert parse_time_ms("1700000000000") == T0
    assert parse_time_ms("2023-11-14T22:13:20Z") == T0
    assert parse_time_ms("2023-11-14 22:13:20.250") == T0 + 250  # naive: UTC
    assert parse_time_ms("2023-11-14T23:13:20.001+01:00") == T0 + 1
    assert parse_time_ms("1700000000000.5") == 1700000000000.5  # left to tick_from_dict to reject


def test_missing_columns_and_bad_labels_are_errors(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("timestamp,symbol,price\n1700000000000,AAAUSDT,1\n")
    with pytest.raises(ValueError, match="quantity"):
        read_ticks(tmp_path / "t.csv")
    (tmp_path / "l.csv").write_text("symbol,start,end\nAAAUSDT,1700000000000,1699999999999\n")
    with pytest.raises(ValueError, match="line 2"):
        read_labels(tmp_path / "l.csv")
    (tmp_path / "s.csv").write_text("timestamp,symbol,price,qty\n1700000000,AAAUSDT,1,1\n")  # seconds
    with pytest.raises(ValueError, match="no valid ticks.*bad_timestamp"):
        read_ticks(tmp_path / "s.csv")
    with pytest.raises(FileNotFoundError):
        read_ticks(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="threshold"):
        BacktestOptions(ticks=tmp_path, labels=tmp_path, out=tmp_path, threshold=1.5)


def test_short_rows_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "timestamp,symbol,price,qty,side\n"
        "1700000000000,AAAUSDT,1.5,2\n"  # no side column value: fine
        "\n"
        "1700000000001,AAAUSDT\n"  # short row
        "1700000000002,AAAUSDT,1.5,2,SELL\n")
    table = read_ticks(tmp_path / "t.csv")
    assert len(table) == 2 and table.rows == 3 and dict(table.rejected) == {"missing_field": 1}
    ticks = next(table.batches(10))[1]
    assert [t.side for t in ticks] == [None, "sell"]
