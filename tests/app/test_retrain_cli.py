"""The retrain command's interval option (the job itself is tested against the broker in test_replay)."""

from __future__ import annotations

import argparse

import pytest

from app.retrain import parse_interval


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("1.5d", 129600.0)])
def test_intervals_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "6x", "-1h", "0m"])
def test_bad_intervals_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="interval"):
        parse_interval(text)
