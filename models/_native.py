"""The compiled core: which modules mypyc compiles, and whether this process runs them.

The per-tick modules below are plain typed Python. ``make install`` also compiles them with
mypyc (``setup.py``, ``CRYPTOTRACE_COMPILE=1``) into ``build/compiled/``, beside a manifest of
the SHA-256 of each source it compiled. Importing :mod:`models` puts that directory ahead of the
sources on the package's ``__path__`` only if every digest still matches: after an edit the
stale extension is ignored (one warning) and the edited source runs, so a test never passes on
yesterday's binary. ``CRYPTOTRACE_CORE=interpreted`` runs the sources even when a fresh build
exists (to compare the two, or to rule the compiled code out).

An installed wheel built with ``CRYPTOTRACE_COMPILE=1`` (the Docker image) carries the
extensions beside the sources instead; Python's import system prefers them, with no manifest
involved.

Why mypyc: the core is a sequential per-tick recursion (protected baselines, adaptive
thresholds) that cannot be vectorised without changing its decisions; mypyc compiles the same
source to C with unboxed floats, adds no runtime dependency, and the interpreted source stays
the reference it is tested against (``tests/models/test_native.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

log = logging.getLogger(__name__)

#: Sources compiled together (one mypyc group, so calls between them stay native), relative to
#: the repository root. Each is on the per-tick path of ``Pipeline.process``.
COMPILED_SOURCES: tuple[str, ...] = (
    "models/ticks.py",
    "models/indicators.py",
    "models/features.py",
    "models/detectors/novelty.py",
    "models/detectors/statistical.py",
    "models/thresholds.py",
    "models/alerts.py",
    "models/pipeline.py",
)
#: Kernels written in Cython, built beside the group by the same command and covered by the same
#: manifest: the forest walk (``models/_forestwalk.pyx``, used by :mod:`models.forests` when built) and
#: the packing of the forests' input rows into an array (``models/_rowpack.pyx``, used by
#: :func:`models.ensemble.model_scores`). Loops that write numpy arrays are what mypyc cannot make
#: fast; they are all the Cython there is, and each has a numpy equivalent it is tested against.
NATIVE_KERNELS: tuple[str, ...] = ("models/_forestwalk.pyx", "models/_rowpack.pyx")
#: The mypyc group: its shared library is ``models/_core__mypyc*.so``.
GROUP_NAME = "models._core"
MANIFEST = "_core.json"
#: ``CRYPTOTRACE_CORE``: ``auto`` (compiled when a fresh build exists) or ``interpreted``.
CORE_ENV = "CRYPTOTRACE_CORE"
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build" / "compiled"


def source_digests(root: Path) -> dict[str, str]:
    """SHA-256 of each compiled source (mypyc's and the kernels) under ``root``; a missing one digests to ``""``."""
    digests = {}
    for rel in (*COMPILED_SOURCES, *NATIVE_KERNELS):
        path = root / rel
        digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return digests


def fresh_build(build_dir: Path, root: Path) -> bool:
    """True if ``build_dir`` holds a build of exactly the current sources under ``root``."""
    manifest = build_dir / "models" / MANIFEST
    if not manifest.is_file():
        return False
    try:
        built = json.loads(manifest.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("compiled core: unreadable manifest %s; running the interpreted sources", manifest)
        return False
    stale = sorted(rel for rel, digest in source_digests(root).items() if built.get(rel) != digest)
    if stale:
        log.warning("compiled core in %s is older than %s; running the interpreted sources "
                    "(`make install` rebuilds it)", build_dir, ", ".join(stale))
        return False
    return True


def package_path(path: list[str], package: str, build_dir: Path = BUILD_DIR, root: Path = REPO_ROOT) -> list[str]:
    """``path`` (a package's ``__path__``) with the compiled build's directory first, when in use.

    ``package`` is the dotted name (``models`` or ``models.detectors``).
    """
    if os.environ.get(CORE_ENV, "auto") == "interpreted" or not fresh_build(build_dir, root):
        return path
    compiled = str(build_dir.joinpath(*package.split(".")))
    return [compiled, *(p for p in path if p != compiled)]


def is_compiled(module_file: str | None) -> bool:
    """True if a module was loaded from an extension (compiled) rather than from its source."""
    return module_file is not None and module_file.endswith(tuple(EXTENSION_SUFFIXES))


def core_kind() -> str:
    """``compiled`` or ``interpreted``: what this process runs for the per-tick core."""
    from models import pipeline  # the last of the group: compiled only if the group is

    return "compiled" if is_compiled(pipeline.__file__) else "interpreted"


def forest_walk() -> str:
    """``native`` or ``numpy``: which forest walk this process runs (built and fresh with the core)."""
    from models.forests import WALK

    return WALK
