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
        """Recent alerts of this worker: ?symbol=&severity=&since=&until= (event time, ms) &limit=."""
        q = request.query
        try:
            since, until = int(q.get("since", 0)), int(q.get("until", 2**62))
            limit = max(0, min(1000, int(q.get("limit", 100))))
        except ValueError:
            return web.json({"error": "since, until and limit must be integers"}, status=400)
        symbol, severity = q.get("symbol"), q.get("severity")
        items = [
            a for a in processor.recent
            if (symbol is None or a["symbol"] == symbol) and (severity is None or a["severity"] == severity)
            and since <= a["event_time"] <= until
        ]
        return web.json({"alerts": items[-limit:] if limit else []})

    @app.page("/health")
    async def health(web: Any, request: Request) -> Response:
        """Liveness: the process and its event loop answer."""
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: Any, request: Request) -> Response:
        """Readiness: partitions assigned and table recovery finished (503 until then)."""
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # TableManager, not its protocol
        is_ready = bool(recovery.completed.is_set()) and not app.rebalancing and not recovery.in_recovery
        return web.json({"ready": is_ready}, status=200 if is_ready else 503)

    @app.page("/models")
    async def models(web: Any, request: Request) -> Response:
        """The model in use: version, combination, threshold and its training-time evaluation."""
        bundle = processor.pipeline.bundle
        body: dict[str, Any] = {
            "model_version": processor.pipeline.model_version,
            "alert_threshold": processor.pipeline.config.alert_threshold,
        }
        if bundle is not None:
            body.update(combination=bundle.combination, model_threshold=bundle.threshold, info=bundle.info)
        return web.json(body)

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
