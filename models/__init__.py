"""Pure detection core: indicators, features, detectors, ensemble, training.

Nothing in this package imports Faust, aiokafka, prometheus_client or does I/O
other than the explicit artifact functions in :mod:`models.artifacts`.
"""
