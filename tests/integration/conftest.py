"""Fixtures of the integration tests: one embedded broker per session, real worker subprocesses.

Every scenario gets its own app id and topics on the shared broker (Tansu, memory only), and
its workers are ``python -m app.cli worker`` subprocesses configured only through
``CRYPTOTRACE_*`` environment variables, as an operator would run them. The logs of the
broker and of the workers a failing test used are attached to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.broker import EmbeddedBroker

from ._support import Names, Workers, make_names, tail


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    seen: set[Path] = set()
    for value in getattr(item, "funcargs", {}).values():
        for title, path in getattr(value, "logs", None) or []:
            if isinstance(path, Path) and path not in seen:
                seen.add(path)
                rep.sections.append((f"{title} (tail of {path})", tail(path)))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One memory-only Tansu broker for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(port=0, log_path=log)
    try:
        b.start()
    except Exception:
        sys.stderr.write(f"embedded broker failed to start; log tail:\n{tail(log)}\n")
        raise
    yield b
    b.stop()


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    """App id and topics unique to this test."""
    return make_names(request.node.name)


@pytest.fixture
def workers(broker: EmbeddedBroker, names: Names, tmp_path: Path) -> Iterator[Workers]:
    """``workers.start(label)`` -> a started worker of this test's app; all stopped at teardown."""
    ws = Workers(broker, names, tmp_path)
    yield ws
    ws.stop_all()
