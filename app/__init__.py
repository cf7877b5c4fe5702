"""Faust plumbing of CryptoTrace: settings, app factory, topics, tables, web, metrics.

``faust -A app worker -l info`` works: the ``app`` attribute is built on first access from
the environment (and starts an embedded broker when none is configured).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    import atexit

    from app.broker import EmbeddedBroker
    from app.factory import create_app, load_models, prepare_topics
    from app.settings import Settings

    settings = Settings()
    url = settings.broker_url
    if not url:
        broker = EmbeddedBroker(settings.embedded_broker_port).start()
        atexit.register(broker.stop)
        url = broker.url
    faust_app = create_app(settings, url, load_models(settings), prepare_topics(settings, url))
    globals()["app"] = faust_app
    return faust_app
