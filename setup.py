"""Build hook: compile the per-tick core with mypyc and the Cython kernels when ``CRYPTOTRACE_COMPILE=1``.

The kernels are the forest walk and the row packing (``models._native.NATIVE_KERNELS``).

Everything else about the package is in ``pyproject.toml``; without the variable this adds
nothing and the install stays pure Python. Two uses (see ``models/_native.py``):

- development, as ``make install`` runs it: ``CRYPTOTRACE_COMPILE=1 python setup.py build_ext
  --build-lib build/compiled --build-temp build/temp``; the package picks the build up while the
  manifest written here matches the sources;
- a wheel for the image: ``CRYPTOTRACE_COMPILE=1 pip wheel --no-build-isolation .`` (with mypy
  and Cython installed), which ships the extensions beside the sources.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ext_modules = []
cmdclass = {}
if os.environ.get("CRYPTOTRACE_COMPILE") == "1":
    import mypy.version
    from Cython.Build import cythonize
    from mypyc.build import mypycify
    from setuptools import Extension

    from models._native import COMPILED_SOURCES, GROUP_NAME, MANIFEST, NATIVE_KERNELS, source_digests

    ext_modules = mypycify(list(COMPILED_SOURCES), group_name=GROUP_NAME, opt_level="3")
    kernels = [Extension(rel.removesuffix(".pyx").replace("/", "."), [rel], extra_compile_args=["-O3"])
               for rel in NATIVE_KERNELS]
    ext_modules += cythonize(kernels, build_dir="build/cython", quiet=True)

    class BuildCoreWithManifest(build_ext):
        """build_ext that records which sources it compiled (what ``models._native`` checks)."""

        def run(self) -> None:
            super().run()
            manifest = Path(self.build_lib) / "models" / MANIFEST
            manifest.write_text(json.dumps({
                "sources": source_digests(Path(__file__).resolve().parent),
                "mypy": mypy.version.__version__,
            }, indent=1) + "\n")

    cmdclass = {"build_ext": BuildCoreWithManifest}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
