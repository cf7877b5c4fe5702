"""Pure detection core: indicators, features, detectors, ensemble, training.

Nothing in this package imports Faust, aiokafka, prometheus_client or does I/O
other than the explicit artifact functions in :mod:`models.artifacts`. The per-tick
modules run compiled when a fresh mypyc build exists (:mod:`models._native`).
"""

from models._native import package_path

__path__ = package_path(__path__, __name__)
