"""The one typed settings object: environment values are checked, with the spellings operators use."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


@pytest.mark.parametrize(("given", "read"), [("WARNING", "warning"), ("Info", "info"), ("debug", "debug")])
def test_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, read: str) -> None:
    monkeypatch.setenv("CRYPTOTRACE_LOG_LEVEL", given)
    assert Settings().log_level == read


def test_an_unknown_log_level_is_refused_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTRACE_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()


def test_event_loop_is_one_of_the_two_the_worker_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOTRACE_EVENT_LOOP", "uvloop")
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("CRYPTOTRACE_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        Settings()
