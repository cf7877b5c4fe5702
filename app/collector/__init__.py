"""Market-data collector: exchange WebSocket trade feeds into the ``ticks`` topic.

Layers, from pure to I/O:

* ``formats`` (shared frame types and number/time parsing) and one module per exchange
  (``binance``, ``coinbase``, ``okx``): subscribe messages and the frame normaliser.
  Pure: bytes in, validated :class:`models.ticks.Tick` out.
* ``gaps`` (trade-id continuity per symbol) and ``handler`` (one received frame: parse,
  de-duplicate, detect gaps, count, hand the ticks on). Pure apart from metrics and logging.
* ``connection`` (one aiohttp WebSocket: subscribe, keep alive, reconnect with backoff),
  ``producer`` (batched, keyed records to Kafka), ``service`` (a pool of connections),
  ``memory`` (tracemalloc snapshots) and ``cli`` (``cryptotrace feed exchange``).
"""

from app.collector.exchanges import EXCHANGES, get_format

__all__ = ["EXCHANGES", "get_format"]
