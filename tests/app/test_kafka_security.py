"""Kafka TLS/SASL settings -> aiokafka arguments and Faust credentials (no secured broker here:
the checks are on what the clients are given, with real certificates made by openssl)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest

from app.factory import faust_settings
from app.kafka_security import KafkaSecurity
from app.settings import Settings
from models.errors import ConfigError


def settings(**kw: object) -> Settings:
    return Settings.model_construct(**{**Settings().model_dump(), **kw})


def test_plaintext_adds_nothing() -> None:
    sec = KafkaSecurity.from_settings(Settings())
    assert sec.client_kwargs() == {} and sec.faust_credentials() is None
    assert "broker_credentials" not in faust_settings(Settings(), "kafka://k:9092")


def test_sasl_plaintext_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTRACE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CRYPTOTRACE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CRYPTOTRACE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("CRYPTOTRACE_KAFKA_SASL_PASSWORD", "s3cret")
    s = Settings()
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())  # never printed or logged
    kw = KafkaSecurity.from_settings(s).client_kwargs()
    assert kw == {"security_protocol": "SASL_PLAINTEXT", "ssl_context": None, "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "svc", "sasl_plain_password": "s3cret"}
    creds = faust_settings(s, "kafka://k:9092")["broker_credentials"]
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "s3cret", "SCRAM-SHA-512")


def test_sasl_without_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="PASSWORD"):
        KafkaSecurity.from_settings(settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc"))


def test_half_of_mutual_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEYFILE"):
        KafkaSecurity.from_settings(settings(kafka_security_protocol="SSL", kafka_ssl_certfile=tmp_path / "c.pem"))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_mutual_tls_context_verifies_and_carries_the_client_certificate(cert: tuple[Path, Path]) -> None:
    certfile, keyfile = cert
    sec = KafkaSecurity.from_settings(settings(kafka_security_protocol="SSL", kafka_ssl_cafile=certfile,
                                               kafka_ssl_certfile=certfile, kafka_ssl_keyfile=keyfile))
    ctx = sec.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c.get("subject") == ((("commonName", "test"),),) for c in ctx.get_ca_certs())
    creds = sec.faust_credentials()
    assert isinstance(creds, faust.SSLCredentials) and creds.context is ctx or creds.context is not None
    assert sec.client_kwargs()["security_protocol"] == "SSL"
