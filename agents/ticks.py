"""The tick agent: micro-batches from ``ticks`` (and the re-keyed topic) into the processor."""

from __future__ import annotations

import logging
from typing import Any

import faust

from app.processor import TickProcessor
from app.settings import Settings

logger = logging.getLogger(__name__)


def register_tick_agent(app: faust.App, source: Any, processor: TickProcessor, settings: Settings) -> Any:
    """Attach the agent. ``concurrency=1``: it writes the state table."""

    @app.agent(source, name="cryptotrace.process_ticks", concurrency=1)
    async def process_ticks(stream: Any) -> None:
        admit = getattr(app, "admit", None)  # WorkerApp: offset order per partition (app/offset_gate.py)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            if admit is not None:
                events = await admit(events)
            if events:
                await processor.handle(events)

    return process_ticks
