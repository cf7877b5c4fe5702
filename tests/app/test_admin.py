"""The mutating endpoints' core: token check, body validation, and what a worker without Redis changes.

The HTTP side (status codes through Faust's web server, cluster-wide application through Redis,
403 without a token) runs against real workers in tests/integration/test_redis.py and test_worker.py.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.admin import AdminError, Control, check_token, parse_threshold
from app.factory import pipeline_config
from app.model_store import MODEL_FILE, save_bundle
from app.settings import Settings
from models.ensemble import ModelBundle
from models.pipeline import Pipeline
from tests.models.test_ensemble import tiny_bundle as _cached_bundle

TOKEN = SecretStr("a-long-enough-admin-token")


def tiny_bundle() -> ModelBundle:
    """A copy of the shared test bundle: saving sets its version and changing a field must not leak."""
    return copy.copy(_cached_bundle())


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic a-long-enough-admin-token",
                                    "Bearer a-long-enough-admin-tokeN", "Bearer a-long-enough-admin-token-and-more"])
def test_a_missing_or_wrong_token_is_refused_with_401(header: str | None) -> None:
    with pytest.raises(AdminError) as err:
        check_token(header, TOKEN)
    assert err.value.status == 401


def test_a_header_that_is_not_utf8_is_refused_not_crashed_on() -> None:
    # aiohttp hands such bytes over as surrogates (surrogateescape).
    raw = b"Bearer a-long-enough-admin-\xff\xfe".decode("utf-8", "surrogateescape")
    with pytest.raises(AdminError) as err:
        check_token(raw, TOKEN)
    assert err.value.status == 401


@pytest.mark.parametrize("header", ["Bearer a-long-enough-admin-token", "bearer a-long-enough-admin-token"])
def test_the_right_token_passes(header: str) -> None:
    check_token(header, TOKEN)


def test_without_a_configured_token_every_request_is_refused_with_403() -> None:
    for header in (None, "Bearer anything", "Bearer "):
        with pytest.raises(AdminError) as err:
            check_token(header, None)
        assert err.value.status == 403


def test_a_short_token_is_not_accepted_as_setting() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        Settings(admin_token=SecretStr("short"))


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.97, 1, 1.0])
def test_thresholds_in_the_unit_interval_are_accepted(value: float) -> None:
    assert parse_threshold({"alert_threshold": value}) == float(value)


@pytest.mark.parametrize("body", [{}, {"threshold": 0.9}, {"alert_threshold": 0.9, "x": 1}, [0.9], 0.9,
                                  {"alert_threshold": -0.1}, {"alert_threshold": 1.01}, {"alert_threshold": "0.9"},
                                  {"alert_threshold": True}, {"alert_threshold": float("nan")},
                                  {"alert_threshold": float("inf")}])
def test_bad_threshold_bodies_are_refused_with_400(body: Any) -> None:
    with pytest.raises(AdminError) as err:
        parse_threshold(body)
    assert err.value.status == 400


def test_null_removes_the_override() -> None:
    assert parse_threshold({"alert_threshold": None}) is None


class _Worker:
    """The two things Control uses of a TickProcessor: the pipeline in use and how to switch it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def use_model(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline


def _control(settings: Settings, bundle: ModelBundle | None = None) -> tuple[Control, _Worker]:
    worker = _Worker(Pipeline(pipeline_config(settings, bundle), bundle))
    control = Control(settings, worker, lambda b, t: Pipeline(pipeline_config(settings, b, t), b))  # type: ignore[arg-type]
    return control, worker


def test_without_redis_a_threshold_applies_to_this_worker_and_null_restores_the_configured_one() -> None:
    settings = Settings(alert_threshold=0.7)
    control, worker = _control(settings)
    state = asyncio.run(control.set_threshold(0.9))
    assert state == {"scope": "worker", "model_version": "stat-only", "alert_threshold": 0.9,
                     "threshold_override": 0.9}
    assert worker.pipeline.config.alert_threshold == 0.9
    assert worker.pipeline.config.cooldown_s == settings.cooldown_s  # nothing else changed
    asyncio.run(control.set_threshold(None))
    assert worker.pipeline.config.alert_threshold == 0.7


def test_without_redis_a_reload_loads_the_verified_artifact_and_keeps_the_override(tmp_path: Path) -> None:
    bundle = tiny_bundle()
    path = save_bundle(bundle, tmp_path)
    control, worker = _control(Settings(model_dir=tmp_path))
    asyncio.run(control.set_threshold(0.99))
    state = asyncio.run(control.reload_model(None))  # the newest artifact
    assert state["model_version"] == path.name == worker.pipeline.model_version
    assert worker.pipeline.config.alert_threshold == 0.99
    assert worker.pipeline.bundle is not None and worker.pipeline.bundle.threshold == bundle.threshold


def test_a_reload_of_a_tampered_or_unknown_artifact_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = save_bundle(tiny_bundle(), tmp_path)
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF
    (path / MODEL_FILE).write_bytes(bytes(data))
    control, worker = _control(Settings(model_dir=tmp_path))
    for version in (path.name, "m-000000000000", None):
        if version is None:
            control.settings = Settings(model_dir=tmp_path / "empty")
        with pytest.raises(AdminError) as err:
            asyncio.run(control.reload_model(version))
        assert err.value.status == 409
    assert worker.pipeline.model_version == "stat-only"


def test_a_pinned_worker_refuses_a_reload(tmp_path: Path) -> None:
    path = save_bundle(tiny_bundle(), tmp_path)
    other = tiny_bundle()
    other.threshold = 0.8
    save_bundle(other, tmp_path)
    settings = Settings(model_dir=tmp_path, model_version=path.name)
    control, worker = _control(settings, tiny_bundle())
    before = worker.pipeline
    with pytest.raises(AdminError) as err:
        asyncio.run(control.reload_model(None))
    assert err.value.status == 409 and path.name in err.value.reason
    assert worker.pipeline is before
