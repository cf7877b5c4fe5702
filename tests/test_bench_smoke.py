"""Smoke test of the end-to-end benchmark (``benchmarks.bench``) in a tiny mode.

Checks the structure of ``bench.json`` and that every contender processed every tick it was
given. No assertion on any speed figure: those depend on the machine and belong to the
benchmark's results, never to a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench import CONTENDERS, LATENCY_KEY, main

ROOT = Path(__file__).resolve().parents[1]
TICKS = 1000

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_bench_tiny_run_reports_every_contender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relative --out, as the README writes it: the contenders run in their own directories.
    monkeypatch.chdir(tmp_path)
    out, results = tmp_path / "out", tmp_path / "results"
    code = main([
        "--out", "out", "--quick", "--ticks", str(TICKS), "--symbols", "10", "--sweep", "10",
        "--latency-seconds", "1", "--warmup-seconds", "0.2", "--short-fetch-wait-ms", "0",
        "--results-dir", str(results), "--model-dir", str(ROOT / "artifacts" / "models"),
    ])
    assert code == 0
    report = json.loads((out / "bench.json").read_text())

    assert report["benchmark"] == "cryptotrace-end-to-end"
    assert report["quick"] is True
    assert report["command"].startswith("python -m benchmarks.bench --out ")
    assert "--ticks 1000" in report["command"]
    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and machine["versions"]["faust-streaming"]
    assert report["config"]["ticks"] == TICKS

    expected = [c for c in CONTENDERS if c != "pipeline_stat_only"]  # --quick leaves it out
    assert list(report["contenders"]) == expected
    for name, c in report["contenders"].items():
        assert c["ticks_offered"] == TICKS, name
        assert c["ticks"] == TICKS, f"{name} processed {c['ticks']} of {TICKS} ticks"
        for key in ("ticks_per_s", "peak_rss_mb", "cpu_s_per_million", "records", "rebalances"):
            assert key in c, (name, key)
        assert LATENCY_KEY in c, name
        if name.startswith("pipeline"):
            assert c["changelog_ticks"] == TICKS, name  # the worker's own state agrees
            assert c["ticks_rejected"] == {} and c["ticks_forwarded"] == 0, name
        latency = c[LATENCY_KEY]
        if latency is None:
            assert c["latency_skipped"], name  # only a saturated contender is skipped
        else:
            assert latency["processed_all"] is True, (name, latency)
            assert latency["samples"] > 0
            assert {"p50", "p95", "p99", "producer_lag_ms_p99"} <= set(latency)
    assert report["contenders"]["raw_aiokafka"][LATENCY_KEY] is not None

    assert set(report["ratios"]) >= {"pipeline_over_raw", "pipeline_over_bare_faust", "pipeline_over_naive"}
    assert [p["symbols"] for p in report["sweep"]] == [10]
    assert report["sweep"][0]["ticks"] == report["config"]["sweep_ticks"]

    assert (out / "bench.png").stat().st_size > 0
    copies = list(results.glob("*-quick.json"))
    assert len(copies) == 1 and json.loads(copies[0].read_text()) == report


@pytest.mark.timeout(240)
def test_bench_rounds_and_fresh_latency_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main([
        "--out", "out", "--quick", "--ticks", str(TICKS), "--symbols", "10", "--sweep", "10",
        "--latency-seconds", "1", "--warmup-seconds", "0.2", "--short-fetch-wait-ms", "0", "--no-record",
        "--contenders", "raw_aiokafka,pipeline", "--rounds", "2", "--latency-broker", "fresh",
        "--worker-settings", "batch_within_s=0.02", "--model-dir", str(ROOT / "artifacts" / "models"),
    ])
    assert code == 0
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert report["config"]["latency_broker"] == "fresh" and report["config"]["rounds"] == 2
    for name in ("raw_aiokafka", "pipeline"):
        c = report["contenders"][name]
        assert len(c["rounds"]) == 2, name
        assert c[LATENCY_KEY]["processed_all"] is True, name  # measured on the fresh broker
    # Each latency run had its own broker: its log is there, and the worker's run directory too.
    assert (tmp_path / "out" / "tansu-latency.log").exists()
    assert (tmp_path / "out" / "runs" / "pipeline-r2").is_dir()
