"""Versioned model artifacts: save, verify by hash, load.

An artifact is a directory ``<model_dir>/<version>/`` holding

* ``forests.skops``: the IsolationForest and RandomForest, in skops' format (no pickle:
  skops refuses to build any type that is not on an allow-list);
* ``manifest.json``: version, SHA-256 of ``forests.skops``, library versions, feature names,
  calibration and stacker parameters, training metrics.

``version`` is a prefix of the SHA-256 of the model file plus the manifest body, so the
same training run gives the same version and any change gives a new one. Loading checks
the hash *before* parsing the model file and refuses artifacts written by another
scikit-learn minor version; both raise :class:`ConfigError` at start-up, never on a tick.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio

from models.detectors.statistical import MODEL_INPUT_NAMES
from models.ensemble import ModelBundle, Platt
from models.errors import ConfigError

logger = logging.getLogger(__name__)

MODEL_FILE = "forests.skops"
MANIFEST = "manifest.json"
FORMAT = 1
# Types skops may construct when loading our forests: scikit-learn estimators and trees only.
_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def save_bundle(bundle: ModelBundle, model_dir: Path) -> Path:
    """Write ``bundle`` as a new artifact; returns its directory. ``bundle.version`` is set here."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / ".incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sio.dump({"iforest": bundle.iforest, "rforest": bundle.rforest}, tmp / MODEL_FILE)
    body: dict[str, Any] = {
        "format": FORMAT,
        "model_sha256": _sha256(tmp / MODEL_FILE),
        "libraries": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "skops": metadata.version("skops")},
        "input_names": list(MODEL_INPUT_NAMES),
        "calibration": {m: [p.a, p.b] for m, p in bundle.calibration.items()},
        "stack": {"weights": list(bundle.stack_weights), "bias": bundle.stack_bias},
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != version:
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
    actual = _sha256(path / MODEL_FILE)
    if actual != manifest["model_sha256"]:
        raise ConfigError(
            f"model {version}: {MODEL_FILE} hash {actual[:12]} != manifest {manifest['model_sha256'][:12]}"
        )
    trained_with = manifest["libraries"]["scikit-learn"]
    if _minor(trained_with) != _minor(sklearn.__version__):
        raise ConfigError(
            f"model {version} was trained with scikit-learn {trained_with}, running {sklearn.__version__}"
        )
    if manifest["input_names"] != list(MODEL_INPUT_NAMES):
        raise ConfigError(f"model {version} expects inputs {manifest['input_names']}, code has {MODEL_INPUT_NAMES}")
    untrusted = sio.get_untrusted_types(file=path / MODEL_FILE)
    bad = [t for t in untrusted if not t.startswith(_ALLOWED_PREFIXES)]
    if bad:
        raise ConfigError(f"model {version} contains types outside the allow-list: {bad}")
    forests = sio.load(path / MODEL_FILE, trusted=untrusted)
    stack = manifest["stack"]
    return ModelBundle(
        version=version,
        iforest=forests["iforest"],
        rforest=forests["rforest"],
        calibration={m: Platt(*ab) for m, ab in manifest["calibration"].items()},
        stack_weights=tuple(stack["weights"]),
        stack_bias=float(stack["bias"]),
        info=manifest.get("info", {}),
        threshold=float(manifest["threshold"]),
        combination=str(manifest.get("combination", "stacked")),
    )
