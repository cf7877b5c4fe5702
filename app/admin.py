"""The mutating endpoints: model reload and the alert threshold, behind a bearer token.

Every other endpoint is a read-only GET. These two change what the workers decide, so each
request must carry ``Authorization: Bearer <CRYPTOTRACE_ADMIN_TOKEN>``; with no token configured
they answer 403 (switched off), with a missing or wrong one 401. The token is compared in
constant time and never logged; every accepted or refused request is logged with its peer
address and counted (``cryptotrace_admin_requests_total{endpoint,outcome}``).

* ``POST /models/reload`` ``{"version": "m-..."}`` (no version: the newest in the model
  directory). With Redis the version is published to the model registry, so every worker
  switches at its next poll (this one at once; 202 with ``"applied": false`` when it could not
  yet); without Redis this worker alone loads it. Either way the artifact is verified by hash
  first (:func:`app.model_store.load_bundle`). A worker with ``CRYPTOTRACE_MODEL_VERSION`` pinned
  answers 409 and publishes nothing.
* ``POST /thresholds`` ``{"alert_threshold": 0.97}`` (``null``: back to the configured or the
  model's own threshold). With Redis it is stored under ``<prefix>thresholds`` and every worker
  applies it at its next poll, so a cluster never decides with two thresholds for long; without
  Redis it applies to this worker. Redis restarted empty keeps every worker's override; a worker
  started later picks it up at its first poll. Alerts carry the threshold they were raised at.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis
from faust.web import Request, Response, View
from pydantic import SecretStr

from app.cache import RedisLink, RedisUnavailable
from app.metrics import Metrics
from app.model_store import load_bundle, newest_version
from app.processor import TickProcessor
from app.registry import ModelWatcher, publish
from app.settings import Settings
from models.ensemble import ModelBundle
from models.errors import ConfigError
from models.pipeline import Pipeline

logger = logging.getLogger(__name__)

#: Builds the pipeline for a model (None: statistical layer) and a threshold override (None: none).
PipelineFactory = Callable[[ModelBundle | None, float | None], Pipeline]


class AdminError(Exception):
    """A refused admin request: HTTP status and the reason given to the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_token(header: str | None, token: SecretStr | None) -> None:
    """Raise :class:`AdminError` unless ``header`` is ``Bearer <token>``.

    >>> check_token("Bearer " + "s" * 16, SecretStr("s" * 16))
    >>> check_token("Bearer nope", SecretStr("s" * 16))
    Traceback (most recent call last):
    ...
    app.admin.AdminError: missing or wrong bearer token
    """
    if token is None:
        raise AdminError(403, "admin endpoints are switched off: set CRYPTOTRACE_ADMIN_TOKEN")
    scheme, _, given = (header or "").partition(" ")
    expected = token.get_secret_value().encode()
    # aiohttp decodes header bytes that are not UTF-8 as surrogates: encode them back, never raise.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"),
                                                             expected):
        raise AdminError(401, "missing or wrong bearer token")


def parse_threshold(body: Any) -> float | None:
    """The threshold a ``POST /thresholds`` body asks for (None: remove the override)."""
    if not isinstance(body, dict) or set(body) != {"alert_threshold"}:
        raise AdminError(400, 'body must be {"alert_threshold": <number in [0, 1]> or null}')
    value = body["alert_threshold"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise AdminError(400, f"alert_threshold must be a number in [0, 1] or null, got {value!r}")
    return float(value)


class Control:
    """What the admin endpoints change: the model in use and the threshold override."""

    def __init__(self, settings: Settings, processor: TickProcessor, build: PipelineFactory,
                 link: RedisLink | None = None, watcher: ModelWatcher | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.processor = processor
        self.build = build
        self.link = link
        self.watcher = watcher
        self.clock = clock
        self.threshold_override: float | None = None
        self.key = settings.key_prefix + "thresholds"
        self._lock = asyncio.Lock()  # POSTs and the registry poll apply one at a time

    @property
    def scope(self) -> str:
        return "cluster" if self.link is not None else "worker"

    def use(self, bundle: ModelBundle | None) -> None:
        """Switch to ``bundle`` with the current threshold override (the registry watcher calls it too)."""
        self.processor.use_model(self.build(bundle, self.threshold_override))

    def _retune(self, threshold: float | None) -> None:
        if threshold == self.threshold_override:
            return
        self.threshold_override = threshold
        self.use(self.processor.pipeline.bundle)
        logger.warning("alert threshold override %s: deciding at %.6f", threshold,
                       self.processor.pipeline.config.alert_threshold)

    def state(self) -> dict[str, Any]:
        pipeline = self.processor.pipeline
        return {"scope": self.scope, "model_version": pipeline.model_version,
                "alert_threshold": pipeline.config.alert_threshold, "threshold_override": self.threshold_override}

    async def reload_model(self, version: str | None) -> dict[str, Any]:
        """Publish (Redis) or load (no Redis) ``version``; ``applied`` says whether this worker uses it now."""
        if self.settings.model_version is not None:
            raise AdminError(409, f"CRYPTOTRACE_MODEL_VERSION pins {self.settings.model_version} on this worker")
        version = version or newest_version(self.settings.model_dir)
        if version is None:
            raise AdminError(409, f"no model artifact in {self.settings.model_dir}")
        async with self._lock:
            try:
                if self.watcher is not None:
                    record = await asyncio.to_thread(publish, self.settings, version)
                    await self.watcher.check()
                    return {**self.state(), "published": record,
                            "applied": self.processor.pipeline.model_version == version}
                # load_bundle checks the model file against its manifest's hash before reading it.
                bundle = await asyncio.to_thread(load_bundle, self.settings.model_dir, version)
            except ConfigError as exc:
                raise AdminError(409, str(exc)) from exc
            except (redis.RedisError, OSError) as exc:
                raise AdminError(503, f"model registry unavailable, nothing published: {exc}") from exc
            self.use(bundle)
        logger.warning("model %s loaded on request (sha256 verified)", version)
        return {**self.state(), "applied": True}

    async def set_threshold(self, threshold: float | None) -> dict[str, Any]:
        async with self._lock:
            if self.link is not None:
                record = orjson.dumps({"alert_threshold": threshold, "set_at_ms": int(self.clock() * 1000)})
                try:
                    await self.link.call("thresholds", lambda r: r.set(self.key, record))
                except RedisUnavailable as exc:
                    raise AdminError(503, "redis unavailable: the threshold was not changed anywhere") from exc
            self._retune(threshold)
            return self.state()

    async def poll(self) -> None:
        """The registry timer: switch to a published model, apply the cluster's threshold override.

        Under the same lock as the POSTs, so a poll that read the key before a POST wrote it cannot
        undo the POST afterwards. A missing key (Redis restarted empty) keeps the override in use: a
        reset is an explicit ``null``.
        """
        if self.watcher is None or self.link is None:
            return
        async with self._lock:
            await self.watcher.check()
            try:
                raw = await self.link.call("thresholds", lambda r: r.get(self.key))
            except RedisUnavailable:
                return  # degraded: keep deciding as before
            if raw is None:
                return
            try:
                self._retune(parse_threshold({"alert_threshold": orjson.loads(raw)["alert_threshold"]}))
            except (ValueError, KeyError, TypeError, AdminError):
                logger.error("threshold key %s holds no valid record: %r", self.key, raw[:200])


def register_admin_views(app: Any, control: Control, settings: Settings, metrics: Metrics) -> None:
    """``POST /models/reload`` and ``POST /thresholds`` (any other method: 405)."""

    async def handle(endpoint: str, web: Any, request: Request,
                     act: Callable[[Any], Any]) -> Response:
        peer = getattr(request, "remote", None)  # aiohttp's request (Faust's type does not declare it)
        try:
            check_token(request.headers.get("Authorization"), settings.admin_token)
            try:
                body = orjson.loads(await request.read() or b"{}")
            except ValueError as exc:
                raise AdminError(400, f"body is not JSON: {exc}") from exc
            result = await act(body)
        except AdminError as exc:
            outcome = "refused" if exc.status in (401, 403) else "failed"
            metrics.admin_requests.labels(endpoint, outcome).inc()
            logger.warning("admin %s from %s refused: %d %s", endpoint, peer, exc.status, exc.reason)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return web.json({"error": exc.reason}, status=exc.status, headers=headers)
        except Exception:  # a defect: answered and counted, never a bare 500 from the framework
            metrics.admin_requests.labels(endpoint, "error").inc()
            logger.exception("admin %s from %s failed", endpoint, peer)
            return web.json({"error": "internal error (see the worker log)"}, status=500)
        metrics.admin_requests.labels(endpoint, "done").inc()
        logger.warning("admin %s from %s: %s", endpoint, peer, result)
        # A publication this worker could not apply yet (artifact not in its model directory,
        # Redis in back-off): accepted, not done.
        return web.json(result, status=200 if result.get("applied", True) else 202)

    async def reload(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not set(body) <= {"version"} or \
                not isinstance(body.get("version", ""), str | None):
            raise AdminError(400, 'body must be {} or {"version": "<model version>"}')
        return await control.reload_model(body.get("version") or None)

    async def thresholds(body: Any) -> dict[str, Any]:
        return await control.set_threshold(parse_threshold(body))

    class ModelReload(View):
        async def post(self, request: Request) -> Response:
            return await handle("models_reload", self, request, reload)

    class Thresholds(View):
        async def post(self, request: Request) -> Response:
            return await handle("thresholds", self, request, thresholds)

    app.page("/models/reload")(ModelReload)
    app.page("/thresholds")(Thresholds)
