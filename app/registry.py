"""Model registry in Redis: publish a version once, every worker switches to it without a restart.

Redis holds a JSON pointer only, under ``<prefix>model``::

    {"version": "m-f20d2433a3b2", "model_sha256": "<sha256 of forests.npz>", "published_at_ms": 1795...}

The artifact itself stays in the model directory every worker reads (a shared volume in
``deploy/docker-compose.yml``). Nothing binary, nothing pickled goes through Redis. Before a
worker loads a published version it checks that the artifact's manifest names the published
hash and then, as at start-up, that the model file matches the manifest
(:func:`app.model_store.load_bundle`). Workers poll the key every ``registry_poll_s``: a
publication made while a worker or Redis was down is picked up when both are back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from app.cache import RedisLink, RedisUnavailable
from app.metrics import Metrics
from app.model_store import MANIFEST, load_bundle, read_manifest
from app.settings import Settings
from models.ensemble import ModelBundle
from models.errors import ConfigError

logger = logging.getLogger(__name__)


def registry_key(settings: Settings) -> str:
    return settings.key_prefix + "model"


def publish(settings: Settings, version: str, *, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Verify ``version`` in the model directory (it must load here) and make it the published model."""
    if not settings.redis_url:
        raise ConfigError("CRYPTOTRACE_REDIS_URL is not set: there is no registry to publish to")
    manifest = read_manifest(settings.model_dir, version)
    bundle = load_bundle(settings.model_dir, version, manifest["model_sha256"])  # refuse what would not load
    record = {"version": bundle.version, "model_sha256": manifest["model_sha256"],
              "published_at_ms": int(clock() * 1000)}
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.set(registry_key(settings), orjson.dumps(record))
    finally:
        client.close()
    logger.info("published model %s (sha256 %s)", version, record["model_sha256"][:12])
    return record


def current(settings: Settings) -> dict[str, Any] | None:
    """The published record, or None."""
    if not settings.redis_url:
        raise ConfigError("CRYPTOTRACE_REDIS_URL is not set")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        raw = client.get(registry_key(settings))
    finally:
        client.close()
    return None if raw is None else dict(orjson.loads(raw))


class ModelWatcher:
    """Worker side: load the published model when it differs from the one in use."""

    def __init__(self, settings: Settings, link: RedisLink, metrics: Metrics, current_version: Callable[[], str],
                 switch: Callable[[ModelBundle], None]) -> None:
        self.settings = settings
        self.link = link
        self.metrics = metrics
        self.current_version = current_version
        self.switch = switch
        self.key = registry_key(settings)
        self._refused: tuple[str, str] | None = None
        self._said: set[tuple[str, str]] = set()  # (what, version) already logged: say it once

    def _once(self, what: str, version: str, msg: str, *args: Any) -> None:
        if (what, version) not in self._said:
            self._said.add((what, version))
            logger.warning(msg, *args)

    async def check(self) -> str | None:
        """One poll; returns the version switched to, if any."""
        try:
            raw = await self.link.call("registry", lambda r: r.get(self.key))
        except RedisUnavailable:
            return None  # degraded: keep the model in use; RedisLink has logged and counted it
        if raw is None:
            return None
        try:
            record = orjson.loads(raw)
            version, sha = str(record["version"]), str(record["model_sha256"])
        except (ValueError, KeyError, TypeError):
            self._once("bad", "", "model registry key %s holds no valid record: %r", self.key, raw[:200])
            return None
        if version == self.current_version() or self._refused == (version, sha):
            return None
        if self.settings.model_version is not None:
            self._once("pinned", version, "model %s published, but CRYPTOTRACE_MODEL_VERSION pins %s: not switching",
                       version, self.settings.model_version)
            return None
        if not (self.settings.model_dir / version / MANIFEST).is_file():
            # Not (yet) in this worker's model directory: try again at the next poll.
            self._once("missing", version, "model %s published but not in %s yet", version, self.settings.model_dir)
            return None
        try:
            bundle = await asyncio.to_thread(load_bundle, self.settings.model_dir, version, sha)
        except ConfigError as exc:
            self._refused = (version, sha)
            self.metrics.model_loads.labels("refused").inc()
            logger.error("published model %s refused, keeping %s: %s", version, self.current_version(), exc)
            return None
        previous = self.current_version()
        self.switch(bundle)
        self.metrics.model_loads.labels("loaded").inc()
        logger.info("switched model %s -> %s (published, sha256 verified)", previous, version)
        return version
