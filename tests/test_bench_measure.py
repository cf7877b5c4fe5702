"""The benchmark's throughput arithmetic (``benchmarks.measure``), on hand-made changelogs, and where it
records its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from benchmarks.bench import BenchOptions, unused_stem, worker_env
from benchmarks.measure import WorkerProc, throughput_from_changelog


def test_the_whole_first_micro_batch_is_left_out_of_the_timed_span() -> None:
    # Three micro-batches of 3 symbols, 100 ticks per symbol each; a batch's writes are a burst of a
    # few ms (1,000 / 1,004 / 1,009 ms), batches 1 s apart. Entries: (cumulative count, write time).
    changelog = {
        sym: [(100 * (k + 1), 1_000 + 1_000 * k + offset) for k in range(3)]
        for sym, offset in (("A", 0), ("B", 4), ("C", 9))
    }
    thr = throughput_from_changelog(changelog)
    assert thr["ticks"] == 900
    # The span runs from the end of the first burst (1,009 ms) to the last write (3,009 ms) and holds
    # the two later batches; counting only the first millisecond's writes would have put 200 ticks of
    # the first batch inside it.
    assert thr["first_ms"] == 1_009 and thr["last_ms"] == 3_009
    assert thr["ticks_in_span"] == 600
    assert thr["ticks_per_s"] == pytest.approx(300.0)


def test_one_burst_leaves_nothing_to_time() -> None:
    thr = throughput_from_changelog({"A": [(50, 1_000)], "B": [(70, 1_003)]})
    assert thr["ticks_in_span"] == 0 and thr["span_s"] == 0.0


def test_a_second_run_of_a_commit_does_not_overwrite_the_first(tmp_path: Path) -> None:
    assert unused_stem(tmp_path, "2026-12-06-abc1234") == "2026-12-06-abc1234"
    (tmp_path / "2026-12-06-abc1234.json").write_text("{}")
    assert unused_stem(tmp_path, "2026-12-06-abc1234") == "2026-12-06-abc1234-run2"
    (tmp_path / "2026-12-06-abc1234-run2.json").write_text("{}")
    assert unused_stem(tmp_path, "2026-12-06-abc1234") == "2026-12-06-abc1234-run3"


def _settings_of(worker: WorkerProc) -> Settings:
    """The settings the worker process would read from its environment."""
    env = {k: v for k, v in worker.env.items() if k.startswith("CRYPTOTRACE_")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return Settings()


def test_short_fetch_wait_worker_is_configured_through_its_own_setting(tmp_path: Path) -> None:
    # A shim that capped aiokafka's constructor argument was undone by the worker's transport, which
    # sets the wait from the settings afterwards: the worker's "short fetch wait" runs waited 100 ms.
    kw = {"broker_url": "kafka://127.0.0.1:9", "app_id": "b", "ticks_topic": "t", "partitions": 2,
          "model_dir": tmp_path, "port": 1}
    short = WorkerProc("w", tmp_path, fetch_wait_ms=10, **kw)
    default = WorkerProc("w", tmp_path, **kw)
    assert _settings_of(short).consumer_fetch_max_wait_ms == 10
    assert _settings_of(default).consumer_fetch_max_wait_ms == Settings().consumer_fetch_max_wait_ms


def test_worker_settings_reach_the_worker_and_unknown_names_are_refused(tmp_path: Path) -> None:
    env = worker_env(["batch_within_s=0.02", "CONSUMER_FETCH_MAX_WAIT_MS=10"])
    worker = WorkerProc("w", tmp_path, broker_url="kafka://127.0.0.1:9", app_id="b", ticks_topic="t",
                        partitions=2, model_dir=tmp_path, port=1, extra_env=env)
    settings = _settings_of(worker)
    assert settings.batch_within_s == 0.02 and settings.consumer_fetch_max_wait_ms == 10
    with pytest.raises(ValueError, match="batch_witin_s"):
        BenchOptions.resolve(tmp_path, worker_settings=("batch_witin_s=0.02",))
    with pytest.raises(ValueError, match="NAME=VALUE"):
        worker_env(["batch_within_s"])
