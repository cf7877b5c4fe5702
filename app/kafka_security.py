"""Kafka TLS and SASL for every client the product opens, from the settings.

Faust takes them as ``broker_credentials``; the plain aiokafka clients (topic set-up, feeds,
replay, collector) as keyword arguments. One place builds both, so a worker and the tools next to
it can never disagree about how to reach a secured cluster.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings
from models.errors import ConfigError


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    username: str | None = None
    password: str | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        password = settings.kafka_sasl_password
        sec = cls(settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_sasl_username,
                  None if password is None else password.get_secret_value(), settings.kafka_ssl_cafile,
                  settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        if sec.sasl and not (sec.username and sec.password):
            raise ConfigError(f"{sec.protocol} needs CRYPTOTRACE_KAFKA_SASL_USERNAME and _PASSWORD")
        if (sec.certfile is None) != (sec.keyfile is None):
            raise ConfigError("mutual TLS needs both CRYPTOTRACE_KAFKA_SSL_CERTFILE and _KEYFILE")
        return sec

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (hostname checked), or None without TLS."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        if self.certfile is not None and self.keyfile is not None:
            ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka producers, consumers and admin clients."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol, "ssl_context": self.ssl_context()}
        if self.sasl:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                       sasl_plain_password=self.password)
        return out

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust
        from faust.types.auth import SASLMechanism

        if self.protocol == "PLAINTEXT":
            return None
        if not self.sasl:
            return faust.SSLCredentials(self.ssl_context())
        return faust.SASLCredentials(username=self.username, password=self.password,
                                     mechanism=SASLMechanism(self.sasl_mechanism), ssl_context=self.ssl_context())
