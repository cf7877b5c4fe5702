"""Wire formats: JSON bytes in and out (orjson), never pickle.

Tick records may be a single JSON object or a JSON array of objects (a feed may pack
several ticks into one record to cut per-message overhead); both are accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from models.errors import BadTickError
from models.ticks import Tick, tick_from_dict

MAX_RECORD_BYTES = 1 << 20  # a tick record above 1 MiB is a producer bug, not data
MAX_TICKS_PER_RECORD = 10_000


@dataclass(frozen=True, slots=True)
class Rejected:
    """One input record (or one element of a batched record) that could not be used."""

    reason: str
    detail: str
    raw: bytes

    def dlq_record(self, topic: str, partition: int, offset: int) -> bytes:
        return orjson.dumps({
            "reason": self.reason,
            "detail": self.detail,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "rejected_at_ms": int(time.time() * 1000),
            "raw": self.raw[:4096].decode("utf-8", errors="replace"),
        })


def decode_ticks(raw: bytes | None) -> tuple[list[Tick], list[Rejected]]:
    """Decode one record into valid ticks and rejected elements (never raises)."""
    if raw is None:
        return [], [Rejected("empty", "record has no value", b"")]
    if len(raw) > MAX_RECORD_BYTES:
        return [], [Rejected("oversized", f"{len(raw)} bytes > {MAX_RECORD_BYTES}", raw[:256])]
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [Rejected("malformed_json", str(exc)[:200], raw)]
    items = obj if isinstance(obj, list) else [obj]
    if len(items) > MAX_TICKS_PER_RECORD:
        return [], [Rejected("oversized", f"{len(items)} ticks in one record", raw[:256])]
    ticks: list[Tick] = []
    rejected: list[Rejected] = []
    for item in items:
        try:
            ticks.append(tick_from_dict(item))
        except BadTickError as exc:
            rejected.append(Rejected(exc.reason, exc.detail, raw if len(items) == 1 else orjson.dumps(item)))
    return ticks, rejected


def encode(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys) so equal records are equal bytes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def decode(raw: bytes) -> Any:
    return orjson.loads(raw)
