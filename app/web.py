"""Web views on Faust's web server: Prometheus metrics, stats, recent alerts, symbol state."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.codec import decode
from app.processor import TickProcessor
from app.settings import Settings


def register_views(app: faust.App, processor: TickProcessor, settings: Settings) -> None:
    metrics = processor.metrics

    @app.page("/metrics")
    async def prometheus(web: Any, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/stats")
    async def stats(web: Any, request: Request) -> Response:
        rejected = {
            s.labels["reason"]: s.value
            for m in metrics.ticks_rejected.collect() for s in m.samples if s.name.endswith("_total")
        }
        return web.json({
            "ticks_processed": int(metrics.ticks_processed._value.get()),
            "ticks_rejected": rejected,
            "ticks_forwarded": int(metrics.ticks_forwarded._value.get()),
            "alerts": len(processor.recent),
            "model_version": processor.pipeline.model_version,
        })

    @app.page("/alerts")
    async def alerts(web: Any, request: Request) -> Response:
        symbol = request.query.get("symbol")
        items = [a for a in processor.recent if symbol is None or a["symbol"] == symbol]
        return web.json({"alerts": items[-int(request.query.get("limit", 100)):]})

    @app.page("/symbols/{symbol}")
    class SymbolView(View):
        async def get(self, request: Request, symbol: str) -> Response:
            raw = processor.table.get(symbol)
            if raw is None:
                return self.notfound(f"unknown symbol {symbol!r} (or owned by another worker)")
            state = decode(raw)
            return self.json({k: state[k] for k in (
                "symbol", "ticks", "last_price", "last_score", "last_event_ms", "last_alert_ms",
                "last_alert_id", "alerts")})

    del SymbolView
