"""Detectors: the statistical layer (per symbol, online) and the batch forests."""

from models._native import package_path

__path__ = package_path(__path__, __name__)
