"""What importing a library adds to a process's peak RSS, for the libraries a faster worker core could use.

Run: ``python -m benchmarks.import_rss [--modules numpy numba onnxruntime sklearn.ensemble ...]``

Why: a worker must stay under 250 MB of peak RSS with 1,000 symbols and the model loaded (issue 4)
and measured ~220 MB. A compiled scoring core is the obvious next step for speed, and the usual
libraries for one (a JIT, an inference runtime, scikit-learn itself) are large to import. Each module
is imported in a fresh interpreter after numpy (which every worker imports anyway), so the figure is
what the module adds on top of numpy: ``ru_maxrss`` after the import minus after numpy. For numba, one
trivial function is also compiled (its JIT, LLVM, loads on first use, not on import). A module that is
not installed is reported as such. One JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

DEFAULT_MODULES = ("numba", "onnxruntime", "sklearn.ensemble", "scipy.stats", "pandas", "pyarrow")

_PROBE = """
import importlib, json, resource, sys
import numpy
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
base = peak_mb()
name = sys.argv[1]
try:
    mod = importlib.import_module(name)
except ImportError as exc:
    print(json.dumps({"module": name, "installed": False, "error": str(exc)}))
    raise SystemExit(0)
after_import = peak_mb()
if name == "numba":
    @mod.njit(cache=False)
    def _total(x):
        s = 0.0
        for v in x:
            s += v
        return s
    _total(numpy.ones(4))
print(json.dumps({"module": name, "installed": True, "version": getattr(mod, "__version__", None),
                  "numpy_mb": round(base, 1), "import_mb": round(after_import - base, 1),
                  "after_first_use_mb": round(peak_mb() - base, 1)}))
"""


def measure(module: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modules", nargs="+", default=list(DEFAULT_MODULES))
    args = p.parse_args(argv)
    results = [measure(m) for m in args.modules]
    sys.stdout.write(json.dumps({"python": sys.version.split()[0], "results": results}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
