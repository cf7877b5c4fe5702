"""One typed settings object, read from the environment (prefix ``CRYPTOTRACE_``).

Built once by the entry point and passed explicitly; nothing else reads the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a worker. Environment variable = ``CRYPTOTRACE_`` + upper-cased name."""

    model_config = SettingsConfigDict(env_prefix="CRYPTOTRACE_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    broker_url: str | None = Field(
        None,
        description="Kafka bootstrap URL(s), e.g. 'kafka://k1:9092;kafka://k2:9092'. "
        "Unset: start an embedded local broker (memory only) for this process and stop it on exit.",
    )
    embedded_broker_port: int = Field(19092, description="Port of the embedded broker (0 = any free port).")
    app_id: str = Field("cryptotrace", description="Faust application id = consumer group and table prefix.")
    topic_partitions: int = Field(8, ge=1, description="Partitions of topics the app creates (ticks, tables).")
    ticks_topic: str = Field("ticks", description="Input topic of trade ticks (JSON).")
    alerts_topic: str = Field("alerts", description="Output topic of alerts (JSON).")
    dlq_topic: str = Field("ticks-dlq", description="Dead-letter topic for rejected input (JSON with reason).")
    rebalance_timeout_s: float | None = Field(
        None, description="Consumer-group rebalance timeout; unset = Faust default (5 with the embedded broker)."
    )
    session_timeout_s: float | None = Field(
        None, description="Consumer session timeout; unset = Faust default (10 with the embedded broker)."
    )
    heartbeat_interval_s: float | None = Field(
        None, description="Consumer heartbeat interval; unset = Faust default (1 with the embedded broker)."
    )
    recovery_consistency_check: bool | None = Field(
        None, description="Faust's check that a table's persisted offset is not past the changelog's end; "
        "unset = on, except with the embedded broker (Tansu reports a stale end offset, which fails the check "
        "after a crash although nothing is wrong).",
    )

    consumer_fetch_max_wait_ms: int = Field(
        100, ge=0, le=10_000,
        description="Longest a consumer fetch may wait for data. faust-streaming hard-codes 1,500 ms; Kafka "
        "answers as soon as a byte is there, so this only bounds idle polls, but the embedded (Tansu) broker "
        "sleeps about half of it after every fetch, which was most of the end-to-end latency.",
    )
    producer_max_batch_bytes: int | None = Field(
        None, ge=1,
        description="Producer batch size in bytes; unset = Faust's default (16 KiB). 1 = one record per batch: "
        "set it for several workers on the embedded (Tansu) broker, which reports a partition's end offset as "
        "its last batch's base offset + 1, so a fail-over's table recovery stops short or refuses to start. "
        "It costs throughput (about 3x slower in the cluster test); real Kafka does not need it.",
    )

    # --- Kafka security (every client: worker, feeds, replay, collector) ---------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signs the brokers' certificates "
                                          "(SSL, SASL_SSL); unset = the system's trust store.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")

    # --- State and web -------------------------------------------------------------------------
    store: Literal["rocksdb://", "memory://"] = Field("rocksdb://", description="Table store (RocksDB via rocksdict).")
    data_dir: Path = Field(Path("cryptotrace-data"), description="Worker data directory (RocksDB tables).")
    rocksdb_write_buffer_mb: int = Field(
        4, ge=1, description="RocksDB memtable size per partition DB (x2 buffers, x2 tables, x partitions held). "
        "Faust's default, 64 MB x 3, let a worker's RSS climb by hundreds of MB under steady load (soak).",
    )
    rocksdb_block_cache_mb: int = Field(
        8, ge=1, description="RocksDB block cache per partition DB: reads hit it only on a snapshot-cache miss "
        "(start-up, rebalance); Faust's default is 2 GB each.",
    )
    web_host: str = Field("127.0.0.1", description="Web server bind address (loopback unless configured).")
    web_port: int = Field(6066, description="Web server port (Faust's default).")

    # --- Processing ------------------------------------------------------------------------------
    batch_size: int = Field(1000, ge=1, description="Max ticks per micro-batch (Kafka read, scoring, table write).")
    # 0.05 against 0.025 (benchmarks/results/2026-12-06-e2e-ab-batch-within.json): single-tick records ~9 % faster
    # (a batch pays its per-symbol table writes over more ticks; at 0.025 a full bench read 0.77x bare Faust,
    # 2026-12-06-a19b7e2.json); batched records p99 at 5,000 ticks/s 138-140 against 100-104 ms, same throughput.
    batch_within_s: float = Field(
        0.05, gt=0, description="Max wait to fill a micro-batch (latency bound; longer = fewer, larger batches; "
        "0.025 suits a feed of batched records that wants latency).",
    )
    gc_young_threshold: int = Field(
        50_000, ge=0,
        description="Worker: allocations between young garbage collections (Python's default is 700; 0 keeps "
                    "Python's settings). At 700 collections cost the worker ~25 us of CPU per tick.")
    # uvloop by default since the core runs compiled: Faust's per-record machinery became the larger part
    # of a tick, and on uvloop the worker took 105-112 CPU s per million ticks against 125-127 (README).
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio" if sys.platform == "win32" else "uvloop",
        description="Worker event loop: uvloop (libuv; not on Windows) or the standard library's. Faust's own "
        "per-record machinery (futures, queues, callbacks) runs on it.")
    model_dir: Path = Field(Path("artifacts/models"), description="Where trained model artifacts live.")
    model_version: str | None = Field(
        None, description="Pin a model version (directory name under model_dir); unset = newest."
    )
    alert_threshold: float | None = Field(
        None, ge=0, le=1,
        description="Ensemble score that raises an alert; unset = the model's threshold (chosen by event-level "
        "evaluation at training), 0.5 with the statistical layer alone.",
    )
    cooldown_s: float = Field(
        300.0, ge=0, description="Event-time seconds after an alert before the same symbol alerts again."
    )
    max_lateness_ms: int = Field(
        1000, ge=0, description="A tick more than this behind its symbol's latest event time goes to the DLQ "
        "(out_of_order); within it, it is folded in at the latest time. Raise it for producers that do not key by "
        "symbol: their re-keyed ticks can arrive far behind.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        """``WARNING`` as well as ``warning``: Python's logging spells its levels in capitals."""
        return value.lower() if isinstance(value, str) else value

    # --- Cluster and web views ------------------------------------------------------------------
    table_standby_replicas: int = Field(
        1, ge=0, description="Standby copies of each table partition kept warm on other workers (fast fail-over)."
    )
    web_advertised_url: str | None = Field(
        None, description="URL other workers use to reach this one (routed web requests), e.g. "
        "'http://worker-1:6066'; unset = http://{web_host}:{web_port}.",
    )
    web_tables_enabled: bool = Field(True, description="Serve /tables/{name}/{key} inspection views.")
    admin_token: SecretStr | None = Field(
        None, min_length=16,
        description="Bearer token of the mutating endpoints (POST /models/reload, POST /thresholds); unset = they "
        "answer 403. A secret: never printed or logged.",
    )
    recent_alerts_per_symbol: int = Field(20, ge=1, description="Recent alerts kept per symbol (table and cache).")
    history_points: int = Field(360, ge=10, description="Chart points (10 s event-time bars) kept per symbol.")

    # --- Redis (cache and model registry) -------------------------------------------------------
    redis_url: str | None = Field(
        None, description="Redis URL, e.g. 'redis://127.0.0.1:6379/0'. Unset: no shared cache, no model registry."
    )
    redis_prefix: str | None = Field(None, description="Prefix of every Redis key; unset = 'cryptotrace:{app_id}:'.")
    cache_size: int = Field(10_000, ge=1, description="Entries of the in-process LRU in front of Redis.")
    cache_ttl_s: float = Field(
        1.0, ge=0, description="How long an in-process cache entry answers reads before Redis is asked again."
    )
    registry_poll_s: float = Field(2.0, gt=0, description="How often workers check Redis for a published model.")

    @property
    def key_prefix(self) -> str:
        """Prefix of this app's Redis keys (apps sharing a Redis do not collide)."""
        return self.redis_prefix if self.redis_prefix is not None else f"cryptotrace:{self.app_id}:"

    @property
    def canonical_url(self) -> str:
        """How other workers reach this worker's web server."""
        return self.web_advertised_url or f"http://{self.web_host}:{self.web_port}"

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and the app must start its own."""
        return not self.broker_url

    @property
    def broker_or_embedded_url(self) -> str:
        """The configured broker, else the embedded one a local `cryptotrace worker`/`demo` started."""
        return self.broker_url or f"kafka://127.0.0.1:{self.embedded_broker_port}"
