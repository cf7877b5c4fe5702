"""Error hierarchy of the detection core (shallow on purpose)."""

from __future__ import annotations


class AnomalyDetectorError(Exception):
    """Base class of every error raised by CryptoTrace code."""


class ConfigError(AnomalyDetectorError):
    """A setting, model artifact or environment is unusable; raised at start-up."""


class BadTickError(AnomalyDetectorError, ValueError):
    """An input record cannot be used; ``reason`` is a short machine-readable code.

    The reason codes are stable: they label the dead-letter records and the
    rejected-ticks metric.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ModelNotFitted(AnomalyDetectorError):
    """A batch model was asked to score before ``fit``."""
