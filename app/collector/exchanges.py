"""The exchanges the collector speaks, by name."""

from __future__ import annotations

from app.collector.binance import Binance
from app.collector.coinbase import Coinbase
from app.collector.formats import ExchangeFormat
from app.collector.okx import Okx

EXCHANGES: dict[str, type[ExchangeFormat]] = {"binance": Binance, "coinbase": Coinbase, "okx": Okx}


def get_format(name: str, *, symbol_prefix: bool = False) -> ExchangeFormat:
    """The format of exchange ``name``; with ``symbol_prefix`` ticks are named ``<name>:<symbol>``."""
    try:
        cls = EXCHANGES[name]
    except KeyError:
        raise ValueError(f"unknown exchange {name!r}; known: {', '.join(EXCHANGES)}") from None
    return cls(f"{name}:" if symbol_prefix else "")
