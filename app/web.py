"""Web views on Faust's web server: Prometheus metrics, stats, recent alerts, symbol state."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.codec import decode
from app.processor import TickProcessor
from app.settings import Settings


def _samples(metric: Any) -> list[Any]:
    return [s for m in metric.collect() for s in m.samples if s.name.endswith("_total")]


def _total(metric: Any) -> float:
    return float(sum(s.value for s in _samples(metric)))


def _by_label(metric: Any, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in _samples(metric):
        out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
    return out


def register_views(app: faust.App, processor: TickProcessor, settings: Settings) -> None:
    metrics = processor.metrics

    @app.page("/metrics")
    async def prometheus(web: Any, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/stats")
    async def stats(web: Any, request: Request) -> Response:
        return web.json({
            "ticks_processed": int(_total(metrics.ticks_processed)),
            "ticks_rejected": _by_label(metrics.ticks_rejected, "reason"),
            "ticks_forwarded": int(_total(metrics.ticks_forwarded)),
            "ticks_redelivered": int(_total(metrics.ticks_redelivered)),
            "alerts": int(sum(_by_label(metrics.alerts, "severity").values())),
            "symbols_cached": len(processor.cache),
            "model_version": processor.pipeline.model_version,
            "alert_threshold": processor.pipeline.config.alert_threshold,
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
