"""Detectors: the statistical layer (per symbol, online) and the batch forests."""
