"""The tick: one trade, validated.

Validation lives here (pure) so that the worker, the backtest and the feeds all
apply the same rules. Wire decoding (bytes -> dict) is the app layer's job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from models._fastinit import field_values
from models.errors import BadTickError

Side = Literal["buy", "sell"]

#: Fields a tick record may carry. Anything else is rejected (``unknown_field``)
#: so that a producer's schema drift is seen instead of silently ignored.
KNOWN_FIELDS: Final = frozenset({"symbol", "price", "quantity", "timestamp", "side", "exchange", "trade_id"})
REQUIRED_FIELDS: Final = ("symbol", "price", "quantity", "timestamp")

# 2000-01-01 .. 2100-01-01 in ms: anything outside is a unit mistake (s or us).
MIN_TIMESTAMP_MS: Final = 946_684_800_000
MAX_TIMESTAMP_MS: Final = 4_102_444_800_000
MAX_SYMBOL_LEN: Final = 40
_SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]*")  # used with fullmatch: "$" would allow "\n"
#: Symbols that passed the check: a feed repeats a few thousand symbols, and the regular expression
#: cost ~0.17 us a tick (a fifth of the whole validation). Bounded: cleared when full, so a stream of
#: ever new symbols costs the check each time and no memory.
_VALID_SYMBOLS: dict[str, bool] = {}
MAX_VALID_SYMBOLS: Final = 100_000


@dataclass(slots=True)
class Tick:
    """One trade. A value: never changed once built (not ``frozen``, for its compiled
    constructor: see :class:`~models.features.Features`).

    Attributes
    ----------
    symbol : str
        Instrument, e.g. ``BTCUSDT`` or ``BRD/BTC``.
    price : float
        Trade price, > 0.
    quantity : float
        Traded quantity in base units, > 0.
    timestamp : int
        Exchange trade time in milliseconds since the epoch (event time).
    side : {"buy", "sell"} or None
        Taker side when the exchange reports it.
    exchange : str or None
        Exchange name.
    trade_id : int or None
        Exchange trade id when known (gap detection).
    """

    symbol: str
    price: float
    quantity: float
    timestamp: int
    side: Side | None = None
    exchange: str | None = None
    trade_id: int | None = None

    def __init__(  # noqa: PLR0913 - one parameter per field, as dataclasses would generate
        self, symbol: str, price: float, quantity: float, timestamp: int, side: Side | None = None,
        exchange: str | None = None, trade_id: int | None = None,
    ) -> None:
        self.symbol = symbol
        self.price = price
        self.quantity = quantity
        self.timestamp = timestamp
        self.side = side
        self.exchange = exchange
        self.trade_id = trade_id

    def to_dict(self) -> dict[str, Any]:
        """Wire form: only the fields that are set."""
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "price": self.price,
            "quantity": self.quantity,
            "timestamp": self.timestamp,
        }
        if self.side is not None:
            out["side"] = self.side
        if self.exchange is not None:
            out["exchange"] = self.exchange
        if self.trade_id is not None:
            out["trade_id"] = self.trade_id
        return out

    def __reduce__(self) -> tuple[type[Tick], tuple[Any, ...]]:
        return Tick, field_values(self)  # copy and pickle, compiled or not (models._fastinit)


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadTickError("wrong_type", f"{name} must be a number, got {type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:  # an integer beyond float range (json, not orjson, produces these)
        raise BadTickError("not_finite", f"{name} is too large") from None
    if not math.isfinite(x):
        raise BadTickError("not_finite", f"{name} is {value!r}")
    if x <= 0.0:
        raise BadTickError("not_positive", f"{name} must be > 0, got {value!r}")
    return x


def tick_from_dict(raw: Any) -> Tick:
    """Validate one decoded record and build a :class:`Tick`.

    Raises
    ------
    BadTickError
        With a stable ``reason``: ``not_an_object``, ``missing_field``,
        ``unknown_field``, ``wrong_type``, ``not_finite``, ``not_positive``,
        ``bad_symbol``, ``bad_timestamp``, ``bad_side``.

    Examples
    --------
    >>> tick_from_dict({"symbol": "BTCUSDT", "price": 50000, "quantity": 0.1,
    ...                 "timestamp": 1700000000000, "side": "buy"})
    Tick(symbol='BTCUSDT', price=50000.0, quantity=0.1, timestamp=1700000000000, side='buy',
         exchange=None, trade_id=None)
    >>> tick_from_dict({"symbol": "BTCUSDT", "price": -1, "quantity": 1, "timestamp": 1700000000000})
    Traceback (most recent call last):
    ...
    models.errors.BadTickError: not_positive: price must be > 0, got -1
    """
    if not isinstance(raw, dict):
        raise BadTickError("not_an_object", f"expected a JSON object, got {type(raw).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in raw:
            raise BadTickError("missing_field", name)
    if not KNOWN_FIELDS.issuperset(raw):  # no set built for the common, clean record
        unknown = raw.keys() - KNOWN_FIELDS
        raise BadTickError("unknown_field", ",".join(sorted(map(str, unknown))))

    symbol = raw["symbol"]
    if not isinstance(symbol, str):
        raise BadTickError("wrong_type", f"symbol must be a string, got {type(symbol).__name__}")
    if symbol not in _VALID_SYMBOLS:
        if not symbol or len(symbol) > MAX_SYMBOL_LEN or not _SYMBOL_RE.fullmatch(symbol):
            raise BadTickError("bad_symbol", repr(symbol[:60]))
        if len(_VALID_SYMBOLS) >= MAX_VALID_SYMBOLS:
            _VALID_SYMBOLS.clear()
        _VALID_SYMBOLS[symbol] = True

    price = _positive_finite("price", raw["price"])
    quantity = _positive_finite("quantity", raw["quantity"])

    ts = raw["timestamp"]
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise BadTickError("wrong_type", f"timestamp must be a number, got {type(ts).__name__}")
    if isinstance(ts, float) and (not math.isfinite(ts) or ts != int(ts)):
        raise BadTickError("bad_timestamp", f"timestamp must be whole milliseconds, got {ts!r}")
    ts_ms = int(ts)
    if not MIN_TIMESTAMP_MS <= ts_ms <= MAX_TIMESTAMP_MS:
        raise BadTickError("bad_timestamp", f"{ts_ms} is not ms since the epoch in 2000..2100")

    raw_side = raw.get("side")
    side: Side | None = None
    if raw_side is not None:
        lowered = raw_side.lower() if isinstance(raw_side, str) else None
        if lowered == "buy":
            side = "buy"
        elif lowered == "sell":
            side = "sell"
        else:
            raise BadTickError("bad_side", repr(raw_side))

    exchange = raw.get("exchange")
    if exchange is not None and not isinstance(exchange, str):
        raise BadTickError("wrong_type", "exchange must be a string")

    trade_id = raw.get("trade_id")
    if trade_id is not None and (isinstance(trade_id, bool) or not isinstance(trade_id, int)):
        raise BadTickError("wrong_type", "trade_id must be an integer")

    return Tick(symbol, price, quantity, ts_ms, side, exchange, trade_id)
