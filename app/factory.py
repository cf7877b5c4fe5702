"""The app factory: one Faust app with its topics, table, agent, web views and metrics."""

from __future__ import annotations

import logging
from typing import Any

import faust

from app.admin import Control, register_admin_views
from app.cache import RedisLink, SymbolCache
from app.kafka_security import KafkaSecurity
from app.metrics import Metrics
from app.model_store import load_bundle, newest_version
from app.processor import TickProcessor
from app.registry import ModelWatcher
from app.settings import Settings
from app.topics import ensure_topics
from app.transport import WorkerApp
from models.ensemble import ModelBundle
from models.pipeline import Pipeline, PipelineConfig

logger = logging.getLogger(__name__)


def load_models(settings: Settings) -> ModelBundle | None:
    """The pinned or newest verified model; None (statistical layer only) when none is trained.

    A pinned version that is missing or fails verification is an error: the operator asked
    for it. With no pin and no artifact the worker runs on the statistical layer and says so.
    """
    if settings.model_version is None and newest_version(settings.model_dir) is None:
        logger.warning(
            "no trained model in %s: scoring with the statistical layer only (run `cryptotrace train`)",
            settings.model_dir,
        )
        return None
    bundle = load_bundle(settings.model_dir, settings.model_version)
    logger.info("loaded model %s from %s", bundle.version, settings.model_dir)
    return bundle


def pipeline_config(settings: Settings, bundle: ModelBundle | None = None,
                    override: float | None = None) -> PipelineConfig:
    """Detection settings; the threshold is the operator's override (POST /thresholds), else the
    configured one, else the model's own (0.5 with the statistical layer alone)."""
    threshold = override if override is not None else settings.alert_threshold
    if threshold is None:
        threshold = bundle.threshold if bundle is not None else 0.5
    return PipelineConfig(alert_threshold=threshold, cooldown_s=settings.cooldown_s,
                          max_lateness_ms=settings.max_lateness_ms)


def faust_settings(settings: Settings, broker_url: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "broker": broker_url,
        "store": settings.store,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.topic_partitions,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        "consumer_auto_offset_reset": "earliest",
        "producer_linger_ms": 5,  # small sends are batched; 5 ms keeps latency low
        "stream_buffer_maxsize": max(4096, settings.batch_size * 4),
        # Standbys follow the changelog of partitions another worker owns, so a fail-over
        # resumes from a warm copy instead of replaying the whole changelog.
        "table_standby_replicas": settings.table_standby_replicas,
        # What other workers use to forward table-routed web requests to this one.
        "canonical_url": settings.canonical_url,
    }
    embedded = settings.embedded
    credentials = KafkaSecurity.from_settings(settings).faust_credentials()
    if credentials is not None:
        conf["broker_credentials"] = credentials
    check = settings.recovery_consistency_check
    conf["recovery_consistency_check"] = (not embedded) if check is None else check
    if settings.producer_max_batch_bytes is not None:
        conf["producer_max_batch_size"] = settings.producer_max_batch_bytes
    for key, value, fallback in (
        ("broker_rebalance_timeout", settings.rebalance_timeout_s, 5.0),
        ("broker_session_timeout", settings.session_timeout_s, 10.0),
        ("broker_heartbeat_interval", settings.heartbeat_interval_s, 1.0),
    ):
        if value is not None:
            conf[key] = value
        elif embedded:
            conf[key] = fallback  # one local broker: no reason to wait Faust's 60 s default
    return conf


def _watch_registry(app: faust.App, settings: Settings, processor: TickProcessor, link: RedisLink,
                    metrics: Metrics, control: Control) -> ModelWatcher:
    """Every worker polls the Redis model registry and the threshold override and applies them
    between two batches."""
    watcher = ModelWatcher(settings, link, metrics, lambda: processor.pipeline.model_version, control.use)

    @app.timer(settings.registry_poll_s, name="cryptotrace.model_registry")
    async def poll_registry() -> None:
        await control.poll()  # the model record, then the threshold override, under the POSTs' lock

    app.cryptotrace_registry = watcher  # type: ignore[attr-defined]
    return watcher


def rocksdb_options(settings: Settings) -> dict[str, Any]:
    """Bounded RocksDB memory per partition DB (a fresh dict per table: Faust's store mutates it)."""
    mb = 1 << 20
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * mb, "max_write_buffer_number": 2,
            "target_file_size_base": 8 * mb, "block_cache_size": settings.rocksdb_block_cache_mb * mb}


def prepare_topics(settings: Settings, broker_url: str) -> int:
    """Create the app's topics if missing; return the partition count of the ticks topic."""
    counts = ensure_topics(
        broker_url, [settings.ticks_topic, settings.alerts_topic, settings.dlq_topic], settings.topic_partitions,
        client=KafkaSecurity.from_settings(settings).client_kwargs(),
    )
    partitions = counts.get(settings.ticks_topic, settings.topic_partitions)
    if partitions != settings.topic_partitions:
        logger.warning("topic %s has %d partitions (setting says %d): sizing the state table to match",
                       settings.ticks_topic, partitions, settings.topic_partitions)
    return partitions


def create_app(
    settings: Settings, broker_url: str, bundle: ModelBundle | None = None, partitions: int | None = None
) -> faust.App:
    """Build the worker app. ``broker_url`` is the configured or embedded broker.

    ``partitions`` is the partition count of the ticks topic (see :func:`prepare_topics`);
    the re-keyed topic and the table changelog get the same, as co-partitioning requires.
    """
    partitions = partitions or settings.topic_partitions
    settings = settings.model_copy(update={"topic_partitions": partitions})
    app = WorkerApp(settings.app_id, **faust_settings(settings, broker_url))
    app.fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms
    ticks = app.topic(settings.ticks_topic, key_type=bytes, value_type=bytes, value_serializer="raw",
                      key_serializer="raw")
    keyed = app.topic(f"{settings.app_id}-ticks-keyed", key_type=str, value_type=bytes, partitions=partitions,
                      key_serializer="raw", value_serializer="raw", internal=True)
    alerts = app.topic(settings.alerts_topic, key_type=str, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    dlq = app.topic(settings.dlq_topic, value_type=bytes, value_serializer="raw")
    # Raw UTF-8 keys (key_type=bytes; str keys are encoded on the way in), like the input topic's:
    # the changelog's key -> partition mapping is then Kafka's murmur2(symbol), which is what Faust's
    # router (table_route) computes. JSON keys (Faust's default for str) hash '"BTCUSDT"' instead and
    # route web requests to the wrong worker.
    table = app.Table("symbol-state", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions,
                      help="Per-symbol snapshot: indicators, baselines, cooldown, applied offsets (JSON).",
                      options=rocksdb_options(settings))
    alerts_table = app.Table("symbol-alerts", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions,
                             help="Per-symbol recent alerts, oldest first (JSON list); moves with the symbol.",
                             options=rocksdb_options(settings))
    metrics = Metrics.create(offset_gate=lambda: getattr(app.consumer, "offset_gate", None),
                             ack_guard=lambda: getattr(app.consumer, "ack_guard", None))
    link = RedisLink(settings.redis_url, metrics) if settings.redis_url else None
    cache = SymbolCache(link, settings.key_prefix, metrics, size=settings.cache_size, ttl_s=settings.cache_ttl_s,
                        history_points=settings.history_points, alerts_per_symbol=settings.recent_alerts_per_symbol)
    processor = TickProcessor(
        pipeline=Pipeline(pipeline_config(settings, bundle), bundle), table=table, alerts_topic=alerts, dlq_topic=dlq,
        keyed_topic=keyed, ticks_topic_name=settings.ticks_topic, metrics=metrics,
        # The co-partitioned count, not the consumer's metadata: on a worker that is not the group
        # leader that metadata can be empty, which made every tick look mis-keyed and loop through
        # the re-key topic forever (found by tests/integration/test_faults.py).
        partitions_of=lambda topic: partitions,
        alerts_table=alerts_table, cache=cache, owner=settings.canonical_url,
        highwater_of=lambda tp: app.consumer.highwater(tp), recent_alerts=settings.recent_alerts_per_symbol,
        producer_buffer=lambda: app.producer.buffer,
        history_points=settings.history_points,
    )
    source = app.topic(settings.ticks_topic, keyed.get_topic_name(), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    del ticks  # the source channel subscribes to both the input and the re-keyed topic

    from agents.ticks import register_tick_agent
    from app.dashboard import register_dashboard
    from app.web import register_views

    control = Control(settings, processor, lambda b, t: Pipeline(pipeline_config(settings, b, t), b), link)
    if link is not None:
        control.watcher = _watch_registry(app, settings, processor, link, metrics, control)
    register_tick_agent(app, source, processor, settings)
    register_views(app, processor, settings)
    register_admin_views(app, control, settings, metrics)
    app.cryptotrace_control = control  # type: ignore[attr-defined]
    register_dashboard(app, processor, settings)

    async def _on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        processor.forget_cached_state()

    app.on_partitions_revoked.connect(_on_revoked)  # type: ignore[arg-type]

    if link is not None:
        @app.timer(1.0, name="cryptotrace.cache_resync")
        async def resync_cache() -> None:
            await processor.sync_cache()

    app.cryptotrace = processor  # type: ignore[attr-defined]
    return app
