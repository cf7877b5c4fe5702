"""Model artifacts: reproducible files, hash checked before parsing, the same scores after a round trip."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn
import skops.io as sio
from sklearn.ensemble import IsolationForest, RandomForestClassifier

from app.model_store import MANIFEST, MODEL_FILE, _sha256, load_bundle, save_bundle
from models.detectors.statistical import MODEL_INPUT_NAMES
from models.ensemble import LOGIT_BOUND, MEMBERS, STAT_EPS, ModelBundle, Platt
from models.errors import ConfigError
from models.forests import FlatForest

WIDTH = len(MODEL_INPUT_NAMES)


def _bundle(seed: int = 0) -> ModelBundle:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, WIDTH))
    y = (x[:, 0] + x[:, 1] > 1.5).astype(int)
    return ModelBundle("unsaved", IsolationForest(n_estimators=8, random_state=seed).fit(x),
                       RandomForestClassifier(n_estimators=6, max_depth=6, random_state=seed).fit(x, y),
                       {m: Platt(1.5, -0.2) for m in MEMBERS}, (0.5, 0.3, 0.2), -0.1, threshold=0.6,
                       combination="mean")


def _rows() -> np.ndarray:
    return np.random.default_rng(99).normal(size=(64, WIDTH)) * 2


def test_round_trip_scores_like_the_fitted_forests(tmp_path: Path) -> None:
    bundle = _bundle()
    iforest, rforest = bundle.iforest, bundle.rforest
    stat = np.linspace(0.01, 0.99, 64)
    path = save_bundle(bundle, tmp_path)
    loaded = load_bundle(tmp_path, path.name)
    assert isinstance(loaded.iforest, FlatForest) and isinstance(loaded.rforest, FlatForest)
    np.testing.assert_array_equal(loaded.iforest.score_samples(_rows()), iforest.score_samples(_rows()))
    np.testing.assert_allclose(loaded.rforest.predict_proba(_rows())[:, 1], rforest.predict_proba(_rows())[:, 1],
                               rtol=0, atol=1e-12)
    assert (loaded.threshold, loaded.combination, loaded.version) == (0.6, "mean", path.name)
    np.testing.assert_allclose(loaded.score_batch(_rows(), stat)[0], bundle.score_batch(_rows(), stat)[0])


def test_same_forests_give_the_same_file_and_version(tmp_path: Path) -> None:
    a = save_bundle(_bundle(), tmp_path / "a")
    b = save_bundle(_bundle(), tmp_path / "b")
    assert a.name == b.name
    assert (a / MODEL_FILE).read_bytes() == (b / MODEL_FILE).read_bytes()
    assert save_bundle(_bundle(seed=1), tmp_path / "c").name != a.name


def test_a_changed_model_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = save_bundle(_bundle(), tmp_path)
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="hash"):
        load_bundle(tmp_path, path.name)


def test_a_published_hash_that_differs_is_refused(tmp_path: Path) -> None:
    path = save_bundle(_bundle(), tmp_path)
    with pytest.raises(ConfigError, match="published"):
        load_bundle(tmp_path, path.name, expected_sha256="0" * 64)


def test_format_1_skops_artifacts_still_load(tmp_path: Path) -> None:
    """Artifacts written before the array format: scikit-learn objects in skops, compiled on load."""
    bundle = _bundle()
    version = "m-legacy000001"
    art = tmp_path / version
    art.mkdir()
    sio.dump({"iforest": bundle.iforest, "rforest": bundle.rforest}, art / "forests.skops")
    manifest = {"format": 1, "version": version, "model_sha256": _sha256(art / "forests.skops"),
                "libraries": {"scikit-learn": sklearn.__version__}, "input_names": list(MODEL_INPUT_NAMES),
                "calibration": {m: [1.0, 0.0] for m in MEMBERS}, "stack": {"weights": [1, 1, 1], "bias": 0.0},
                "threshold": 0.5, "combination": "vote"}
    (art / MANIFEST).write_text(json.dumps(manifest))
    loaded = load_bundle(tmp_path, version)
    np.testing.assert_array_equal(loaded.iforest.score_samples(_rows()), bundle.iforest.score_samples(_rows()))
    assert loaded.combination == "vote"


def test_a_worker_loads_and_scores_a_model_without_importing_scikit_learn(tmp_path: Path) -> None:
    """What keeps a worker's RSS down: neither scikit-learn nor SciPy is imported to start, load or score."""
    path = save_bundle(_bundle(), tmp_path)
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "import app.cli, app.factory, app.processor, app.web\n"
        "app.cli.build_parser()  # what `cryptotrace worker` runs first: every subcommand's arguments\n"
        "from app.model_store import load_bundle\n"
        f"b = load_bundle(Path({str(tmp_path)!r}), {path.name!r})\n"
        f"b.score_batch(np.zeros((3, {WIDTH})), np.full(3, 0.5))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'skops'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_train_if_missing_keeps_a_usable_model_and_replaces_one_the_code_cannot_use(tmp_path: Path) -> None:
    """``make model`` runs ``cryptotrace train --if-missing``: a model trained for other inputs is no model."""
    from app.cli import _usable_model
    from app.settings import Settings

    settings = Settings(model_dir=tmp_path)
    assert _usable_model(settings) is None  # nothing trained yet
    path = save_bundle(_bundle(), tmp_path)
    assert _usable_model(settings) == path.name
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["input_names"] = manifest["input_names"][:-2]  # as written before two inputs were added
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert _usable_model(settings) is None


def test_forest_scoring_benchmark_reports_every_forest_and_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Structure only (``python -m benchmarks.forest_scoring``): speed figures belong to its output, not to tests."""
    from benchmarks.forest_scoring import main
    from models.forests import WALK

    path = save_bundle(_bundle(), tmp_path)
    assert main(["--model-dir", str(tmp_path), "--batches", "1", "20", "--seconds", "0.01", "--repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_version"] == path.name
    timings = out["us_per_row_median"]
    assert list(timings) == [WALK]  # this process's walk, unless others are asked for
    assert {f: sorted(v) for f, v in timings[WALK].items()} == {"rforest": ["1", "20"], "iforest": ["1", "20"]}
    assert all(t > 0 for v in timings[WALK].values() for t in v.values())


def test_an_artifact_saved_before_the_stack_clip_scores_as_it_was_trained(tmp_path: Path) -> None:
    """No ``stack.clip`` in the manifest: members reach the stacker through probabilities clipped at
    1e-6, and the statistical score through a logit clipped there too (the formula of those models)."""
    bundle = _bundle()
    bundle.combination = "stacked"
    bundle.calibration = {"statistical": Platt(0.5, 0.0), "iforest": Platt(30.0, -15.0), "rforest": Platt(40.0, -10.0)}
    path = save_bundle(bundle, tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["stack"]["clip"] == 50.0 and "stat_eps" not in manifest["stack"]
    del manifest["stack"]["clip"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    legacy = load_bundle(tmp_path, path.name)
    stat = np.concatenate([[1e-12, 1e-9, 0.3, 1.0 - 1e-9, 1.0], np.linspace(0.01, 0.99, 59)])
    eps = 1e-6

    def clipped_logit(p: np.ndarray) -> np.ndarray:
        q = np.clip(p, eps, 1 - eps)
        return np.log(q / (1 - q))

    raw = np.column_stack([clipped_logit(stat), -legacy.iforest.score_samples(_rows()),
                           legacy.rforest.predict_proba(_rows())[:, 1]])
    cal = [bundle.calibration[m] for m in MEMBERS]
    probs = np.column_stack([1 / (1 + np.exp(-(c.a * raw[:, i] + c.b))) for i, c in enumerate(cal)])
    as_trained = 1 / (1 + np.exp(-(clipped_logit(probs) @ np.asarray(bundle.stack_weights) + bundle.stack_bias)))
    np.testing.assert_allclose(legacy.score_batch(_rows(), stat)[0], as_trained, rtol=0, atol=1e-9)
    # Saved again (a periodic retrain of such a model), it keeps its clips ...
    again = load_bundle(tmp_path / "x", save_bundle(dataclasses.replace(legacy, version="u"), tmp_path / "x").name)
    np.testing.assert_allclose(again.score_batch(_rows(), stat)[0], as_trained, rtol=0, atol=1e-9)
    # ... which matter: with the new ones, the statistical scores 1e-9 and 1e-12 are told apart.
    new = dataclasses.replace(legacy, stack_clip=LOGIT_BOUND, stat_eps=STAT_EPS)
    assert new.score_batch(_rows(), stat)[0][0] < as_trained[0] - 1e-3
