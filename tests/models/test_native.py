"""The compiled core (models/_native.py): in use, identical to its source, never stale.

The rest of the suite runs whichever core the process loaded (compiled after `make install`);
these tests pin down that the compiled modules are what ran, that they compute exactly what the
interpreted source computes, and that an edited source is never shadowed by an old binary.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from models import _native
from models.detectors.statistical import StatisticalConfig, StatisticalDetector, StatResult
from models.features import FeatureConfig, FeatureEngine, Features
from models.pipeline import Pipeline, PipelineConfig, Position, SymbolSnapshot
from models.synthetic import default_profiles, generate, random_injections
from models.thresholds import AdaptiveConfig
from models.ticks import Tick

ROOT = Path(__file__).resolve().parents[2]
INTERPRETED = os.environ.get(_native.CORE_ENV) == "interpreted"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def run_core() -> str:
    """Everything the core computes over 3 symbols x 2 h with injected events, as JSON text.

    Text, not parsed values: nan compares unequal to itself, its JSON spelling does not.
    """
    profiles = default_profiles(3, seed=5)
    t0 = 1_710_000_000_000
    injections = random_injections(profiles, start_ms=t0, duration_s=7200, seed=5, per_symbol_day=36)
    batch, _ = generate(profiles, start_ms=t0, duration_s=7200, injections=injections, seed=5)
    ticks = list(batch.ticks())
    pipeline = Pipeline()
    snaps: dict[str, SymbolSnapshot] = {}
    scores: list[float | None] = []
    alerts = []
    for i in range(0, len(ticks), 500):
        result = pipeline.process(snaps, ticks[i : i + 500])
        scores.extend(result.scores)
        alerts.extend(a.to_dict() for a in result.alerts)
    # The forests' input rows, which only a model run returns: computed here the same way.
    engine, detector, rows = FeatureEngine(ticks[0].symbol), StatisticalDetector(), []
    for tick in ticks:
        if tick.symbol == engine.symbol:
            feats = engine.update(tick)
            stat = detector.score_one_raw(feats)
            detector.learn_one(feats, stat)
            rows.append(stat.model_input(feats))
    states = {s: snap.to_state() for s, snap in sorted(snaps.items())}
    return json.dumps({"ticks": len(ticks), "scores": scores, "alerts": alerts, "states": states, "rows": rows})


def test_the_suite_runs_the_compiled_core_unless_told_otherwise() -> None:
    # `make test` builds the core first: a suite that silently tested only the source would
    # leave the shipped binary untested.
    import importlib

    kinds = {rel: _native.is_compiled(importlib.import_module(rel[:-3].replace("/", ".")).__file__)
             for rel in _native.COMPILED_SOURCES}
    expected = not INTERPRETED
    assert kinds == dict.fromkeys(_native.COMPILED_SOURCES, expected)
    assert _native.core_kind() == ("interpreted" if INTERPRETED else "compiled")


def test_compiled_and_interpreted_cores_compute_the_same_values() -> None:
    interpreted = subprocess.run(
        [sys.executable, "-c", "from tests.models.test_native import run_core; print(run_core())"],
        env=_env(**{_native.CORE_ENV: "interpreted"}), cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    here = run_core()
    parsed = json.loads(here)
    assert parsed["ticks"] > 20_000 and len(parsed["alerts"]) >= 3  # a run that exercised the alert path
    assert here == interpreted


def _fake_tree(root: Path, build: Path) -> None:
    for rel in _native.COMPILED_SOURCES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    (build / "models").mkdir(parents=True)
    manifest = {"sources": _native.source_digests(root), "mypy": "test"}
    (build / "models" / _native.MANIFEST).write_text(json.dumps(manifest))


def test_a_fresh_build_goes_first_and_a_stale_one_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_native.CORE_ENV, raising=False)
    root, build = tmp_path / "src", tmp_path / "build"
    _fake_tree(root, build)
    source_path = [str(root / "models")]
    assert _native.package_path(source_path, "models", build, root) == [str(build / "models"), *source_path]
    assert _native.package_path([str(root / "models/detectors")], "models.detectors", build, root)[0] == str(
        build / "models" / "detectors")

    monkeypatch.setenv(_native.CORE_ENV, "interpreted")
    assert _native.package_path(source_path, "models", build, root) == source_path
    monkeypatch.delenv(_native.CORE_ENV)

    (root / "models/features.py").write_text("# edited after the build\n")
    with caplog.at_level(logging.WARNING, logger="models._native"):
        assert _native.package_path(source_path, "models", build, root) == source_path
    assert "models/features.py" in caplog.text and "interpreted" in caplog.text

    (build / "models" / _native.MANIFEST).write_text("{not json")
    assert _native.package_path(source_path, "models", build, root) == source_path
    (build / "models" / _native.MANIFEST).unlink()
    assert _native.package_path(source_path, "models", build, root) == source_path


@pytest.mark.parametrize("value", [
    Tick("BTCUSDT", 100.0, 0.5, 1_710_000_000_000, "buy", "binance", 7),
    FeatureConfig(), StatisticalConfig(wash_multiple=9.0), AdaptiveConfig(), PipelineConfig(),
    Position("ticks", 3, 42),
])
def test_frozen_core_values_copy_and_pickle(value: object) -> None:
    # Compiled, the default restore assigns field by field, which a frozen class refuses.
    assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value  # noqa: S301 - our own bytes


def test_a_tick_result_pickles_with_its_features() -> None:
    engine = FeatureEngine("X")
    feats = engine.update(Tick("X", 10.0, 1.0, 1_710_000_000_000))
    stat = StatResult(0.25, "z_momentum", (1.0, 2.0), True)
    # repr, not ==: the first tick's features hold nan, which equals nothing.
    assert repr(pickle.loads(pickle.dumps((feats, stat)))) == repr((feats, stat))  # noqa: S301 - our own bytes
    assert isinstance(copy.copy(feats), Features) and repr(copy.copy(feats)) == repr(feats)


def test_the_compiled_modules_doctests_pass_on_their_source() -> None:
    # Compiled functions carry no docstrings: models/conftest.py leaves these modules out of the
    # main run's doctests, which run here on the source instead.
    files = [str(ROOT / rel) for rel in _native.COMPILED_SOURCES]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--doctest-modules", "-p", "no:cacheprovider", *files],
        env=_env(**{_native.CORE_ENV: "interpreted"}), cwd=ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout
