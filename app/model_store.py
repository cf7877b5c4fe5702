"""Versioned model artifacts: save, verify by hash, load.

An artifact is a directory ``<model_dir>/<version>/`` holding

* ``forests.npz``: the IsolationForest and RandomForest compiled to flat node arrays
  (:mod:`models.forests`): numbers only, read with ``allow_pickle=False``, scored with numpy, so a
  worker never imports scikit-learn (about 100 MB of RSS) to load or use a model;
* ``manifest.json``: version, SHA-256 of ``forests.npz``, library versions, feature names,
  calibration and stacker parameters, training metrics.

``version`` is a prefix of the SHA-256 of the manifest body (which holds the model file's hash),
so the same training run gives the same version and any change gives a new one: the model file
is written byte for byte reproducibly (fixed zip timestamps). Loading checks the hash *before*
parsing the model file; a bad artifact raises :class:`ConfigError` at start-up, never on a tick.

Artifacts of format 1 (``forests.skops``, scikit-learn objects in skops' format) still load:
skops and scikit-learn are imported for that path only, and the forests are compiled on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from models.detectors.statistical import MODEL_INPUT_NAMES
from models.ensemble import LEGACY_STACK_CLIP, LEGACY_STAT_EPS, STAT_EPS, ModelBundle, Platt
from models.errors import ConfigError
from models.forests import ISOLATION, PROBA, FlatForest, compile_forest

logger = logging.getLogger(__name__)

MODEL_FILE = "forests.npz"
MANIFEST = "manifest.json"
FORMAT = 2
_LEGACY_FILE = "forests.skops"  # format 1
# Types skops may construct when loading format-1 forests: scikit-learn estimators and trees only.
_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "builtins.")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal forests give equal bytes and an equal hash


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def write_forests(path: Path, iforest: FlatForest, rforest: FlatForest) -> None:
    """The two forests as ``.npy`` members of one zip (what ``np.load`` reads), reproducibly."""
    arrays = {**iforest.to_arrays("iforest"), **rforest.to_arrays("rforest")}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), buf.getvalue(),
                        compress_type=zipfile.ZIP_DEFLATED)


def read_forests(path: Path) -> tuple[FlatForest, FlatForest]:
    """The (iforest, rforest) pair of a format-2 model file; structural checks, no pickle."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            iforest = FlatForest.from_arrays(arrays, "iforest")
            rforest = FlatForest.from_arrays(arrays, "rforest")
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: not a valid forest file: {exc}") from exc
    if iforest.kind != ISOLATION or rforest.kind != PROBA:
        raise ConfigError(f"{path}: forests of kinds {iforest.kind}/{rforest.kind}, expected {ISOLATION}/{PROBA}")
    return iforest, rforest


def save_bundle(bundle: ModelBundle, model_dir: Path) -> Path:
    """Write ``bundle`` as a new artifact; returns its directory. ``bundle.version`` is set here."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / ".incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    iforest, rforest = compile_forest(bundle.iforest), compile_forest(bundle.rforest)
    write_forests(tmp / MODEL_FILE, iforest, rforest)
    body: dict[str, Any] = {
        "format": FORMAT,
        "model_sha256": _sha256(tmp / MODEL_FILE),
        # What trained the forests (scoring needs numpy only).
        "libraries": {"scikit-learn": _library_version("scikit-learn"), "numpy": np.__version__},
        "input_names": list(MODEL_INPUT_NAMES),
        "calibration": {m: [p.a, p.b] for m, p in bundle.calibration.items()},
        "stack": {"weights": list(bundle.stack_weights), "bias": bundle.stack_bias, "clip": bundle.stack_clip,
                  # Written only when it is not the default (a retrained legacy bundle): new manifests
                  # stay as they were when the clip came in.
                  **({"stat_eps": bundle.stat_eps} if bundle.stat_eps != STAT_EPS else {})},
        "threshold": bundle.threshold,
        "combination": bundle.combination,
        "info": bundle.info,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    version = "m-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
    body["version"] = version
    (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True))
    final = model_dir / version
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    bundle.version = version
    bundle.iforest, bundle.rforest = iforest, rforest
    logger.info("saved model %s to %s", version, final)
    return final


def newest_version(model_dir: Path) -> str | None:
    """The most recently written artifact in ``model_dir``, or None."""
    if not model_dir.is_dir():
        return None
    found = [p for p in model_dir.iterdir() if (p / MANIFEST).is_file() and not p.name.startswith(".")]
    return max(found, key=lambda p: (p / MANIFEST).stat().st_mtime).name if found else None


def read_manifest(model_dir: Path, version: str) -> dict[str, Any]:
    """The manifest of one artifact, checked for format and version (not yet the model file)."""
    if not version or "/" in version or version.startswith("."):
        raise ConfigError(f"bad model version {version!r}")
    try:
        manifest = json.loads((model_dir / version / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model {version}: unreadable manifest: {exc}") from exc
    known_format = isinstance(manifest, dict) and manifest.get("format") in (1, FORMAT)
    if not known_format or manifest.get("version") != version:
        raise ConfigError(f"model {version}: manifest format/version mismatch")
    return manifest


def load_bundle(model_dir: Path, version: str | None = None, expected_sha256: str | None = None) -> ModelBundle:
    """Load and verify one artifact (the newest when ``version`` is None).

    ``expected_sha256``: the model file hash a publisher announced (model registry); an artifact
    whose manifest names another hash is refused before anything is parsed.
    """
    version = version or newest_version(model_dir)
    if version is None:
        raise ConfigError(f"no model artifact in {model_dir}")
    path = model_dir / version
    manifest = read_manifest(model_dir, version)
    if expected_sha256 is not None and manifest.get("model_sha256") != expected_sha256:
        raise ConfigError(
            f"model {version}: manifest hash {str(manifest.get('model_sha256'))[:12]} != published "
            f"{expected_sha256[:12]}"
        )
    model_file = path / (MODEL_FILE if manifest["format"] == FORMAT else _LEGACY_FILE)
    actual = _sha256(model_file)
    if actual != manifest["model_sha256"]:
        raise ConfigError(
            f"model {version}: {model_file.name} hash {actual[:12]} != manifest {manifest['model_sha256'][:12]}"
        )
    if manifest["input_names"] != list(MODEL_INPUT_NAMES):
        raise ConfigError(f"model {version} expects inputs {manifest['input_names']}, code has {MODEL_INPUT_NAMES}")
    if manifest["format"] == FORMAT:
        iforest, rforest = read_forests(model_file)
    else:
        iforest, rforest = _read_legacy(version, model_file, manifest)
    for forest in (iforest, rforest):
        if forest.n_features_in_ != len(MODEL_INPUT_NAMES):
            raise ConfigError(f"model {version}: a forest takes {forest.n_features_in_} inputs, "
                              f"not {len(MODEL_INPUT_NAMES)}")
    stack = manifest["stack"]
    return ModelBundle(
        version=version,
        iforest=iforest,
        rforest=rforest,
        calibration={m: Platt(*ab) for m, ab in manifest["calibration"].items()},
        stack_weights=tuple(stack["weights"]),
        stack_bias=float(stack["bias"]),
        # Artifacts without a clip read their members through probabilities clipped at 1e-6 and
        # the statistical layer's score through a logit clipped there too: they score as trained.
        stack_clip=float(stack.get("clip", LEGACY_STACK_CLIP)),
        stat_eps=float(stack.get("stat_eps", STAT_EPS if "clip" in stack else LEGACY_STAT_EPS)),
        info=manifest.get("info", {}),
        threshold=float(manifest["threshold"]),
        combination=str(manifest.get("combination", "stacked")),
    )


def _read_legacy(version: str, model_file: Path, manifest: dict[str, Any]) -> tuple[FlatForest, FlatForest]:
    """Format 1: scikit-learn forests in skops' format (type allow-list), compiled on load."""
    import sklearn  # noqa: PLC0415 - format-1 artifacts only; format 2 needs neither library
    import skops.io as sio  # noqa: PLC0415

    trained_with = manifest["libraries"]["scikit-learn"]
    if _minor(trained_with) != _minor(sklearn.__version__):
        raise ConfigError(
            f"model {version} was trained with scikit-learn {trained_with}, running {sklearn.__version__}"
        )
    untrusted = sio.get_untrusted_types(file=model_file)
    bad = [t for t in untrusted if not t.startswith(_ALLOWED_PREFIXES)]
    if bad:
        raise ConfigError(f"model {version} contains types outside the allow-list: {bad}")
    forests = sio.load(model_file, trusted=untrusted)
    return compile_forest(forests["iforest"]), compile_forest(forests["rforest"])
