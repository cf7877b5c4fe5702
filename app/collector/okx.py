"""OKX v5: the public ``trades`` channel.

Documented format (OKX API v5, "WebSocket / Trades channel" and "Overview / WebSocket"):

* connect to ``wss://ws.okx.com:8443/ws/v5/public`` and send
  ``{"op": "subscribe", "args": [{"channel": "trades", "instId": "BTC-USDT"}, ...]}``; each
  channel is confirmed with ``{"event": "subscribe", "arg": {...}, "connId": "..."}``, a failure
  is ``{"event": "error", "code": "60012", "msg": "...", "connId": "..."}``; ``{"event":
  "notice", "code": "64008", ...}`` announces that the connection will close (service upgrade);
* pushes are ``{"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [{"instId": "BTC-USDT",
  "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306", "side": "buy", "ts": "1630048897897",
  "count": "3", "source": "0", "seqId": 1234}]}`` with every number a string;
* ``side`` is the taker side; one message aggregates the fills of one taker order at one price:
  ``tradeId`` is the LAST trade id of the aggregation and ``count`` how many it covers (ids
  ``tradeId - count + 1 .. tradeId``), which the gap check takes into account;
* the server closes a connection that received nothing for 30 s: the client sends the text
  ``ping`` after N < 30 s of silence and expects ``pong``;
* limits: 3 connection requests per second per IP, 480 subscribe/unsubscribe/login requests
  per connection per hour, a subscribe request of at most 64 KB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.collector.formats import ExchangeFormat, Frame, Trade, integer, invalid, json_object, number
from models.errors import BadTickError
from models.ticks import tick_from_dict

_PONG = ("pong", b"pong")


class Okx(ExchangeFormat):
    name = "okx"
    default_url = "wss://ws.okx.com:8443/ws/v5/public"
    # Not documented for trades: our cap. 300 args are ~15 KB, well under the 64 KB request cap,
    # and OKX itself advises few channels per connection for heavy channels (order books: < 30).
    max_per_connection = 300
    per_connection = 100
    connect_interval_s = 0.5  # 3 connections/s/IP
    control_interval_s = 0.5  # subscribe requests are budgeted per hour: never burst them
    keepalive_s = 20.0  # ping after 20 s of silence: inside the 30 s the server allows
    client_ping = "ping"

    def exchange_symbol(self, symbol: str) -> str:
        return symbol.strip().replace("/", "-").upper()

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        args = [{"channel": "trades", "instId": self.exchange_symbol(s)} for s in symbols]
        return [orjson.dumps({"op": "subscribe", "args": args}).decode()]

    def parse(self, raw: str | bytes) -> Frame:
        if raw in _PONG:  # the answer to our text ping: not JSON
            return Frame("pong")
        obj = json_object(raw)
        if isinstance(obj, Frame):
            return obj
        data = obj.get("data")
        if data is not None:
            arg = obj.get("arg")
            if not isinstance(arg, dict) or arg.get("channel") != "trades" or not isinstance(data, list):
                return invalid("unknown_message", f"push of {str(arg)[:80]}")
            return self._trades(data)
        event = obj.get("event")
        if event in ("subscribe", "unsubscribe", "channel-conn-count"):
            return Frame("ack", detail=str(obj.get("arg"))[:200])
        if event == "error":
            return Frame("error", detail=f"{obj.get('code')}: {obj.get('msg')}"[:200])
        if event == "notice":
            return Frame("reconnect", detail=f"{obj.get('code')}: {obj.get('msg')}"[:200])
        return invalid("unknown_message", str(event or list(obj)[:5]))

    def _trades(self, data: list[Any]) -> Frame:
        frame = Frame("trades")
        for item in data:
            try:
                frame.trades.append(self._trade(item))
            except BadTickError as exc:
                frame.invalid.append((exc.reason, exc.detail[:200]))
        if not frame.trades and frame.invalid:
            frame.kind = "invalid"
        return frame

    def _trade(self, d: Any) -> Trade:
        if not isinstance(d, dict):
            raise BadTickError("not_an_object", f"okx trade is {type(d).__name__}")
        try:
            inst, tid, px, sz, side, ts = d["instId"], d["tradeId"], d["px"], d["sz"], d["side"], d["ts"]
        except KeyError as exc:
            raise BadTickError("missing_field", f"okx trade has no {exc.args[0]!r}") from None
        trade_id = integer(tid, "tradeId")
        count = integer(d.get("count", 1), "count")
        if count < 1:
            raise BadTickError("bad_number", f"count must be >= 1, got {count}")
        tick = tick_from_dict({
            "symbol": self.symbol_prefix + inst if isinstance(inst, str) else inst,
            "price": number(px, "px"),
            "quantity": number(sz, "sz"),
            "timestamp": integer(ts, "ts"),
            "side": side,
            "exchange": self.name,
            "trade_id": trade_id,
        })
        return tick, trade_id - count + 1
