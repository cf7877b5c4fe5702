"""The live dashboard: one HTML page (``/dashboard``) and the chart data it polls.

``/dashboard/series/{symbol}`` gives a symbol's chart points (10 s event-time bars: close,
highest score, Bollinger bands), its summary and recent alerts. It is answered from the shared
cache when Redis is up (no hop), otherwise by the symbol's owner (Faust table routing).
The page itself is static HTML + JS drawing SVG by hand (no chart library, no build step).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from app.cache import RedisUnavailable
from app.dashboard_page import PAGE
from app.processor import TickProcessor
from app.settings import Settings
from app.web import route_to_owner


def register_dashboard(app: faust.App, processor: TickProcessor, settings: Settings) -> None:
    cache = processor.dashboard
    state = processor.table

    @app.page("/dashboard")
    async def dashboard(web: Any, request: Request) -> Response:
        return web.html(PAGE)

    async def from_cache(symbol: str) -> dict[str, Any] | None:
        if not cache.shared:
            return None
        try:
            summary = await cache.summary(symbol)
            if summary is None:
                return None
            points = await cache.history(symbol) or []
            alerts = await cache.symbol_alerts(symbol) or []
        except RedisUnavailable:
            return None
        return {"symbol": symbol, "summary": summary, "points": points, "alerts": alerts, "source": "cache"}

    def from_owner(symbol: str) -> dict[str, Any] | None:
        summary = processor.summary(symbol)
        if summary is None:
            return None
        return {"symbol": symbol, "summary": summary, "points": processor.history.get(symbol),
                "alerts": list(reversed(processor.symbol_alerts(symbol))), "source": "owner"}

    @app.page("/dashboard/series/{symbol}")
    class SeriesView(View):
        async def get(self, request: Request, symbol: str) -> Response:
            body = await from_cache(symbol)
            if body is None:
                routed = await route_to_owner(app, state, symbol, self.web, request)
                if routed is not None:
                    return routed
                body = from_owner(symbol)
            if body is None:
                return self.notfound(f"unknown symbol {symbol!r}")
            return self.json(body)

    del SeriesView
