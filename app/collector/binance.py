"""Binance spot: ``<symbol>@trade`` streams on the combined-stream endpoint.

Documented format (Binance spot "WebSocket Streams"):

* connect to ``wss://stream.binance.com:9443/stream`` and send
  ``{"method": "SUBSCRIBE", "params": ["btcusdt@trade", ...], "id": 1}``; the answer is
  ``{"result": null, "id": 1}`` (errors: ``{"code": 2, "msg": "...", "id": 1}`` or
  ``{"error": {"code": ..., "msg": ...}, "id": 1}``);
* events arrive wrapped as ``{"stream": "btcusdt@trade", "data": {...}}`` with the trade
  ``{"e": "trade", "E": event ms, "s": "BTCUSDT", "t": trade id, "p": "price", "q": "qty",
  "T": trade ms, "m": buyer is maker, "M": ignore}``;
* ``m`` true means the buyer was the resting (maker) order, so the aggressor (taker) sold;
* the server sends a ping frame every 20 s and drops the connection after a minute without
  the pong; a connection lives at most 24 h; ``serverShutdown`` announces a closing server;
* limits: 1024 streams per connection, 5 incoming (client-to-server) messages per second per
  connection, 300 connection attempts per 5 minutes per IP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.collector.formats import ExchangeFormat, Frame, integer, invalid, json_object, number
from models.errors import BadTickError
from models.ticks import Tick, tick_from_dict

#: Streams per SUBSCRIBE message. Binance documents no per-message cap; small messages keep
#: a rejected one cheap to diagnose. 1024 streams then take 6 messages, sent 4 per second.
STREAMS_PER_MESSAGE = 200


class Binance(ExchangeFormat):
    name = "binance"
    default_url = "wss://stream.binance.com:9443/stream"
    max_per_connection = 1024  # documented
    # One busy connection is one TCP stream read by one coroutine: 200 symbols keeps a
    # reconnect's loss (and the server's per-connection send buffer) small.
    per_connection = 200
    connect_interval_s = 1.0  # 300 connections / 5 min / IP = 1 per second
    control_interval_s = 0.25  # 4 messages/s, under the 5/s limit (pongs count too)
    keepalive_s = 30.0  # the server pings every 20 s: 30 s of silence is already abnormal

    def exchange_symbol(self, symbol: str) -> str:
        return symbol.strip().replace("/", "").replace("-", "").lower()

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        streams = [f"{self.exchange_symbol(s)}@trade" for s in symbols]
        return [
            orjson.dumps({"method": "SUBSCRIBE", "params": streams[i : i + STREAMS_PER_MESSAGE],
                          "id": i // STREAMS_PER_MESSAGE + 1}).decode()
            for i in range(0, len(streams), STREAMS_PER_MESSAGE)
        ]

    def parse(self, raw: str | bytes) -> Frame:
        obj = json_object(raw)
        if isinstance(obj, Frame):
            return obj
        data = obj.get("data", obj) if "stream" in obj else obj  # combined or raw stream
        if not isinstance(data, dict):
            return invalid("not_an_object", "data is " + type(data).__name__)
        event = data.get("e")
        if event == "trade":
            try:
                trade = self._trade(data)
            except BadTickError as exc:
                return invalid(exc.reason, exc.detail)
            return Frame("trades", [trade])
        if "id" in obj and "result" in obj:
            return Frame("ack", detail=f"id={obj['id']}")
        if "error" in obj or ("code" in obj and "msg" in obj):
            return Frame("error", detail=str(obj.get("error") or obj.get("msg"))[:200])
        if event == "serverShutdown":
            return Frame("reconnect", detail="serverShutdown")
        return invalid("unknown_message", str(event or list(obj)[:5]))

    def _trade(self, d: dict[str, Any]) -> tuple[Tick, int]:
        try:
            symbol, tid, price, qty, ts, buyer_maker = d["s"], d["t"], d["p"], d["q"], d["T"], d["m"]
        except KeyError as exc:
            raise BadTickError("missing_field", f"binance trade has no {exc.args[0]!r}") from None
        if not isinstance(buyer_maker, bool):
            raise BadTickError("bad_side", f"m must be true/false, got {buyer_maker!r}")
        trade_id = integer(tid, "t")
        return tick_from_dict({
            "symbol": self.symbol_prefix + symbol if isinstance(symbol, str) else symbol,
            "price": number(price, "p"),
            "quantity": number(qty, "q"),
            "timestamp": ts,
            "side": "sell" if buyer_maker else "buy",  # m: buyer is maker -> the taker sold
            "exchange": self.name,
            "trade_id": trade_id,
        }), trade_id
