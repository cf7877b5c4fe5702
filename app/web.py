"""Web views on Faust's web server: metrics, health, models, symbols, alerts, tables, cluster.

Where an answer lives:

* one symbol (``/symbols/{symbol}``, ``/tables/{name}/{key}``): on the worker that owns the
  key's partition; any other worker forwards the request there (Faust's table routing);
* every symbol or alert (``/symbols``, ``/alerts``): the shared Redis cache when configured
  and up (any worker answers alone), else every worker is asked for its own (``?local=1``)
  and the answers are merged. The response says which (``"source"``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import ClientTimeout
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.cache import RedisUnavailable
from app.codec import decode
from app.model_store import newest_version
from app.processor import TickProcessor, _as_current_event, partition_for
from app.settings import Settings
from app.summary import brief

logger = logging.getLogger(__name__)
PEER_TIMEOUT_S = 3.0


def _samples(metric: Any) -> list[Any]:
    return [s for m in metric.collect() for s in m.samples if s.name.endswith("_total")]


def _total(metric: Any) -> float:
    return float(sum(s.value for s in _samples(metric)))


def _by_label(metric: Any, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in _samples(metric):
        out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
    return out


class Cluster:
    """This worker's place in the consumer group, and asking every worker for its part."""

    def __init__(self, app: faust.App, processor: TickProcessor) -> None:
        self.app = app
        self.processor = processor

    @property
    def me(self) -> str:
        return str(self.app.conf.canonical_url)

    def hosts(self) -> list[str]:
        """Every worker that owns table partitions (from the last assignment), this one included."""
        try:
            hosts = set(self.app.router.tables_metadata())
        except Exception:  # noqa: BLE001 - no assignment yet: only this worker is known
            hosts = set()
        return sorted(hosts | {self.me})

    def active_partitions(self, table: Any) -> set[int]:
        topic = table.changelog_topic.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def local_rows(self, table: Any) -> list[tuple[str, Any]]:
        """(key, decoded value) of the partitions this worker owns (not its standby copies)."""
        owned, n = self.active_partitions(table), table.partitions or 1
        with _as_current_event(None):
            items = list(table.items())
        rows = []
        for raw_key, value in items:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            # Keys starting with '"' are left-overs from JSON-keyed tables (see TickProcessor.snapshot).
            if not key.startswith('"') and partition_for(key, n) in owned:
                rows.append((key, decode(value)))
        return rows

    async def gather(self, path: str, local: Callable[[], Awaitable[Any]]) -> tuple[list[Any], list[str]]:
        """``local()`` here, GET ``path`` (with ``local=1``) on every other worker; (answers, unreachable)."""
        answers: list[Any] = []
        missing: list[str] = []

        async def ask(host: str) -> None:
            if host == self.me:
                answers.append(await local())
                return
            try:
                timeout = ClientTimeout(total=PEER_TIMEOUT_S)
                async with self.app.http_client.get(host.rstrip("/") + path, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise OSError(f"status {resp.status}")
                    answers.append(await resp.json())
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                logger.warning("worker %s did not answer %s: %s", host, path, exc)
                missing.append(host)

        await asyncio.gather(*(ask(h) for h in self.hosts()))
        return answers, missing


async def route_to_owner(app: faust.App, table: Any, key: str, web: Any, request: Request) -> Response | None:
    """Forward the request to the worker owning ``key`` in ``table``; None when that is this worker.

    Faust's ``app.router.route_req`` (what ``@app.table_route`` does), plus two cases it leaves
    to a 500: no assignment yet (503), and a producer that has not written to the table's
    changelog yet, so knows no partition count for it to hash the key with (fetch it, retry).
    """
    for attempt in range(2):
        try:
            return await app.router.route_req(table.name, key, web, request)
        except SameNode:
            return None
        except ServiceUnavailable:
            break
        except TypeError:
            if attempt:
                break
            producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
            await producer.partitions_for(table.changelog_topic.get_topic_name())
    return web.json({"error": "the owner of this key is not known yet (rebalancing)"}, status=503)


def _alert_filter(request: Request) -> Callable[[dict[str, Any]], bool] | None:
    q = request.query
    try:
        since, until = int(q.get("since", 0)), int(q.get("until", 2**62))
    except ValueError:
        return None
    symbol, severity = q.get("symbol"), q.get("severity")

    def keep(a: dict[str, Any]) -> bool:
        return ((symbol is None or a["symbol"] == symbol) and (severity is None or a["severity"] == severity)
                and since <= a["event_time"] <= until)

    return keep


def register_views(app: faust.App, processor: TickProcessor, settings: Settings) -> None:
    metrics = processor.metrics
    cluster = Cluster(app, processor)
    state, alerts_table = processor.table, processor.alerts_table
    app.cryptotrace_cluster = cluster  # type: ignore[attr-defined]

    @app.page("/metrics")
    async def prometheus(web: Any, request: Request) -> Response:
        return web.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/stats")
    async def stats(web: Any, request: Request) -> Response:
        return web.json({
            "worker": cluster.me,
            "ticks_processed": int(_total(metrics.ticks_processed)),
            "ticks_rejected": _by_label(metrics.ticks_rejected, "reason"),
            "ticks_forwarded": int(_total(metrics.ticks_forwarded)),
            "ticks_redelivered": int(_total(metrics.ticks_redelivered)),
            "alerts": int(sum(_by_label(metrics.alerts, "severity").values())),
            "symbols_cached": len(processor.cache),
            "model_version": processor.pipeline.model_version,
            "alert_threshold": processor.pipeline.config.alert_threshold,
            "threshold_override": getattr(getattr(app, "cryptotrace_control", None), "threshold_override", None),
        })

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
        """The model in use (version, combination, threshold, training evaluation) and the published one."""
        bundle = processor.pipeline.bundle
        body: dict[str, Any] = {
            "worker": cluster.me,
            "model_version": processor.pipeline.model_version,
            "alert_threshold": processor.pipeline.config.alert_threshold,
            "threshold_override": getattr(getattr(app, "cryptotrace_control", None), "threshold_override", None),
            "pinned": settings.model_version,
            "newest_local": newest_version(settings.model_dir),
        }
        if bundle is not None:
            body.update(combination=bundle.combination, model_threshold=bundle.threshold, info=bundle.info)
        watcher = getattr(app, "cryptotrace_registry", None)
        if watcher is not None:
            try:
                raw = await watcher.link.call("registry", lambda r: r.get(watcher.key))
                body["published"] = None if raw is None else decode(raw)
            except RedisUnavailable:
                body["published"] = "redis unavailable"
        return web.json(body)

    @app.page("/cluster")
    async def cluster_view(web: Any, request: Request) -> Response:
        """This worker's active and standby partitions, and every worker's table partitions."""
        def by_topic(tps: Any) -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            for tp in sorted(tps):
                out.setdefault(tp.topic, []).append(tp.partition)
            return out

        assignor = app.assignor
        return web.json({
            "worker": cluster.me,
            "active": by_topic(assignor.assigned_actives()),
            "standby": by_topic(assignor.assigned_standbys()),
            "table_owners": {host: dict(t) for host, t in app.router.tables_metadata().items()},
            "standby_replicas": settings.table_standby_replicas,
        })

    async def local_symbols() -> list[dict[str, Any]]:
        out = []
        for key, _value in cluster.local_rows(state):
            summary = processor.summary(key)
            if summary is not None:
                out.append(brief(summary))
        return out

    @app.page("/symbols")
    async def symbols(web: Any, request: Request) -> Response:
        """Every symbol: last price, score, severity, alert state (``?local=1``: this worker's only)."""
        if request.query.get("local"):
            return web.json({"symbols": await local_symbols(), "source": "local", "worker": cluster.me})
        if processor.dashboard.shared:
            try:
                rows = [brief(s) for s in await processor.dashboard.summaries()]
                return web.json({"symbols": rows, "source": "cache"}, headers=_source_headers("cache", []))
            except RedisUnavailable:
                pass
        answers, missing = await cluster.gather("/symbols?local=1", lambda: _wrap(local_symbols))
        rows = sorted((r for a in answers for r in a["symbols"]), key=lambda r: r["symbol"])
        return web.json({"symbols": rows, "source": "cluster", "unreachable": missing},
                        headers=_source_headers("cluster", missing))

    @app.page("/symbols/{symbol}")
    class SymbolView(View):
        """One symbol on its owner: indicators, member scores, threshold, recent alerts."""

        async def get(self, request: Request, symbol: str) -> Response:
            routed = await route_to_owner(app, state, symbol, self.web, request)
            if routed is not None:
                return routed
            summary = processor.summary(symbol)
            if summary is None:
                return self.notfound(f"unknown symbol {symbol!r}")
            recent = list(reversed(processor.symbol_alerts(symbol)))
            return self.json({**summary, "recent_alerts": recent, "served_by": cluster.me})

    async def local_alerts() -> dict[str, Any]:
        rows = [a for _key, alerts in cluster.local_rows(alerts_table) for a in alerts]
        return {"alerts": rows}

    @app.page("/alerts")
    async def alerts(web: Any, request: Request) -> Response:
        """Recent alerts, newest first: ?symbol=&severity=&since=&until= (event time, ms) &limit=."""
        keep = _alert_filter(request)
        try:
            limit = max(0, min(1000, int(request.query.get("limit", 100))))
        except ValueError:
            keep = None
        if keep is None:
            return web.json({"error": "since, until and limit must be integers"}, status=400)
        symbol = request.query.get("symbol")
        rows: list[dict[str, Any]] | None = None
        source, missing = "local", list[str]()
        if request.query.get("local"):
            rows = (await local_alerts())["alerts"]
        elif processor.dashboard.shared:
            try:
                cache = processor.dashboard
                rows, source = await (cache.symbol_alerts(symbol) if symbol else cache.recent_alerts()) or [], "cache"
            except RedisUnavailable:
                rows = None
        if rows is None:
            answers, missing = await cluster.gather("/alerts?local=1", local_alerts)
            rows, source = [a for ans in answers for a in ans["alerts"]], "cluster"
        unique = {a["alert_id"]: a for a in rows if keep(a)}
        ordered = sorted(unique.values(), key=lambda a: (a["event_time"], a["alert_id"]), reverse=True)
        # The body stays {"alerts": [...]}; where the answer came from is in the headers.
        return web.json({"alerts": ordered[:limit]}, headers=_source_headers(source, missing))

    if settings.web_tables_enabled:
        register_table_views(app, cluster)
    del SymbolView


def _source_headers(source: str, unreachable: list[str]) -> dict[str, str]:
    """``X-Cryptotrace-Source``: cache, cluster or local; ``X-Cryptotrace-Unreachable``: workers that did not answer."""
    headers = {"X-Cryptotrace-Source": source}
    if unreachable:
        headers["X-Cryptotrace-Unreachable"] = " ".join(unreachable)
    return headers


async def _wrap(fn: Callable[[], Awaitable[list[dict[str, Any]]]]) -> dict[str, Any]:
    return {"symbols": await fn()}


def register_table_views(app: faust.App, cluster: Cluster) -> None:
    """``/tables`` (names) and ``/tables/{name}/{key}`` (the value, JSON-decoded, from the key's owner)."""

    @app.page("/tables")
    async def tables(web: Any, request: Request) -> Response:
        return web.json({"tables": [{"name": t.name, "help": t.help, "partitions": t.partitions}
                                    for t in app.tables.values()]})

    @app.page("/tables/{name}/{key}")
    class TableKeyView(View):
        async def get(self, request: Request, name: str, key: str) -> Response:
            table: Any = app.tables.get(name)
            if table is None:
                return self.notfound(f"unknown table {name!r}", names=sorted(app.tables))
            routed = await route_to_owner(app, table, key, self.web, request)
            if routed is not None:
                return routed
            with _as_current_event(None):
                raw = table.get(key)
            if raw is None:
                return self.notfound(f"no key {key!r} in {name!r}")
            value = decode(raw) if isinstance(raw, bytes) else raw
            return self.json({"table": name, "key": key, "value": value, "served_by": cluster.me})

    del TableKeyView
