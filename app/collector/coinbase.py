"""Coinbase Exchange: the ``matches`` channel of the public WebSocket feed.

Documented format (Coinbase Exchange "WebSocket Feed", channels ``matches`` and ``heartbeat``):

* connect to ``wss://ws-feed.exchange.coinbase.com`` and, within 5 seconds, send
  ``{"type": "subscribe", "product_ids": ["BTC-USD", ...], "channels": ["matches", "heartbeat"]}``;
  the answer is ``{"type": "subscriptions", "channels": [...]}``, a rejection
  ``{"type": "error", "message": "...", "reason": "..."}``;
* each trade is ``{"type": "match", "trade_id": 10, "sequence": 50, "maker_order_id": "...",
  "taker_order_id": "...", "time": "2014-11-07T08:19:27.028459Z", "product_id": "BTC-USD",
  "size": "5.23512", "price": "400.23", "side": "sell"}``; right after subscribing, each product's
  most recent trade comes as ``"type": "last_match"`` (same fields);
* ``side`` is the MAKER order's side ("sell" = an up-tick: a buyer took the offer), so the
  taker side is the opposite;
* ``heartbeat`` messages (one per product per second) carry ``last_trade_id``; they keep an
  otherwise quiet connection visibly alive;
* limits: 8 connection requests per second per IP (bursts to 20), 100 client messages per
  second per IP; no per-connection product cap is documented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.collector.formats import ExchangeFormat, Frame, integer, invalid, iso_to_ms, json_object, number
from models.errors import BadTickError
from models.ticks import Tick, tick_from_dict

_TAKER = {"buy": "sell", "sell": "buy"}  # maker side -> taker side


class Coinbase(ExchangeFormat):
    name = "coinbase"
    default_url = "wss://ws-feed.exchange.coinbase.com"
    # Not documented: our cap. Heartbeats alone are 1 message/s per product, so 100 products
    # make >= 100 msg/s on one socket before any trade; Coinbase drops clients that fall behind,
    # and a dropped connection then costs at most 100 products' trades.
    max_per_connection = 100
    per_connection = 50
    connect_interval_s = 0.25  # 8 connections/s/IP: 4/s leaves room for reconnect bursts
    control_interval_s = 0.1  # 100 messages/s/IP shared by all connections
    keepalive_s = 10.0  # heartbeats arrive every second; 10 s of silence means trouble

    def exchange_symbol(self, symbol: str) -> str:
        return symbol.strip().replace("/", "-").upper()

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        products = [self.exchange_symbol(s) for s in symbols]
        return [orjson.dumps({"type": "subscribe", "product_ids": products,
                              "channels": ["matches", "heartbeat"]}).decode()]

    def parse(self, raw: str | bytes) -> Frame:
        obj = json_object(raw)
        if isinstance(obj, Frame):
            return obj
        kind = obj.get("type")
        if kind == "match" or kind == "last_match":
            try:
                return Frame("trades", [self._trade(obj)])
            except BadTickError as exc:
                return invalid(exc.reason, exc.detail)
        if kind == "heartbeat":
            return Frame("heartbeat")
        if kind == "subscriptions":
            return Frame("ack")
        if kind == "error":
            return Frame("error", detail=f"{obj.get('message')}: {obj.get('reason')}"[:200])
        return invalid("unknown_message", str(kind or list(obj)[:5]))

    def _trade(self, d: dict[str, Any]) -> tuple[Tick, int]:
        try:
            product, tid, price, size, time, maker_side = (
                d["product_id"], d["trade_id"], d["price"], d["size"], d["time"], d["side"])
        except KeyError as exc:
            raise BadTickError("missing_field", f"coinbase match has no {exc.args[0]!r}") from None
        side = _TAKER.get(maker_side) if isinstance(maker_side, str) else None
        if side is None:
            raise BadTickError("bad_side", f"side must be buy/sell, got {maker_side!r}")
        trade_id = integer(tid, "trade_id")
        return tick_from_dict({
            "symbol": self.symbol_prefix + product if isinstance(product, str) else product,
            "price": number(price, "price"),
            "quantity": number(size, "size"),
            "timestamp": iso_to_ms(time),
            "side": side,
            "exchange": self.name,
            "trade_id": trade_id,
        }), trade_id
