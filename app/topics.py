"""Topic set-up: make sure the input and output topics exist before anything produces.

A producer that writes first would have the broker auto-create ``ticks`` with its own
default partition count, and the state table (whose changelog must have as many partitions
as its source topic) would no longer match. So the worker and the feeds create the topics
first, and the worker sizes its table by the partition count ``ticks`` really has.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.feed import bootstrap_of

logger = logging.getLogger(__name__)


async def ensure_topics_async(bootstrap: str, names: list[str], partitions: int,
                              client: dict[str, Any] | None = None) -> dict[str, int]:
    """Create missing topics (one attempt, inside a running loop); return each topic's partition count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
                logger.info("created topics %s with %d partitions", missing, partitions)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
        described = await admin.describe_topics(names)
        return {d["topic"]: len(d["partitions"]) for d in described if d.get("partitions")}
    finally:
        await admin.close()


def ensure_topics(broker_url: str, names: list[str], partitions: int, attempts: int = 20,
                  client: dict[str, Any] | None = None) -> dict[str, int]:
    """Create missing topics; return each topic's partition count. Retries while the broker starts."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return asyncio.run(ensure_topics_async(bootstrap_of(broker_url), names, partitions, client))
        except Exception as exc:  # noqa: BLE001 - broker not ready yet: any client error, retried
            last = exc
            asyncio.run(asyncio.sleep(0.5))
    raise RuntimeError(f"could not create topics {names} on {broker_url}: {last}")
