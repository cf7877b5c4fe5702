"""One typed settings object, read from the environment (prefix ``CRYPTOTRACE_``).

Built once by the entry point and passed explicitly; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
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

    # --- State and web -------------------------------------------------------------------------
    store: Literal["rocksdb://", "memory://"] = Field("rocksdb://", description="Table store (RocksDB via rocksdict).")
    data_dir: Path = Field(Path("cryptotrace-data"), description="Worker data directory (RocksDB tables).")
    web_host: str = Field("127.0.0.1", description="Web server bind address (loopback unless configured).")
    web_port: int = Field(6066, description="Web server port (Faust's default).")

    # --- Processing ------------------------------------------------------------------------------
    batch_size: int = Field(1000, ge=1, description="Max ticks per micro-batch (Kafka read, scoring, table write).")
    batch_within_s: float = Field(0.05, gt=0, description="Max wait to fill a micro-batch (latency bound).")
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
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and the app must start its own."""
        return not self.broker_url
