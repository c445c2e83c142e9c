"""Refused records: what goes to the DLQ, planned like any other operation. Pure.

A refusal travels through apply.lua and the outbox like every output (so it is published
once, across crashes), and it carries everything its DLQ record needs: the key and value
as read (a null stays null), the Kafka timestamp and its type, and the record's own
headers, kept whole and in order up to `charger_topics.headers.KEPT_HEADER_BYTES`; headers past
that are left off and counted, never cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack  # type: ignore[import-untyped]
import orjson

from charger.charging.records import Inbound
from charger.events.tracecontext import for_record
from charger.protocol.ops import Refuse, SlotPlan
from charger_topics.headers import KEPT_HEADER_BYTES

_MAX_DETAIL = 500
_MAX_EVENT_ID = 200

Headers = Sequence[tuple[str, bytes | None]]


def refuse(plan: SlotPlan, slots: int, record: Inbound, reason: str, detail: str) -> None:
    """Plan a refusal: `record`'s key, original bytes and headers go to the DLQ with
    `reason`, `detail` and where and when the record was read.

    The op goes into the slot of the record's partition number, under the watermark of its
    source partition like every other op, so a redelivered refusal is not published twice.
    """
    kept, dropped = keep_headers(record.headers)
    plan.slot(record.partition % slots).add(
        record.source,
        record.offset,
        Refuse(
            False if record.key is None else record.key,
            False if record.value is None else record.value,
            reason,
            detail[:_MAX_DETAIL],
            record.topic,
            record.partition,
            record.offset,
            event_id(record.value),
            record.timestamp_ms,
            record.timestamp_type,
            pack_headers(kept),
            dropped,
        ),
        for_record(
            record.topic, record.partition, record.offset, record.timestamp_ms, record.headers
        ),
    )


def keep_headers(headers: Headers) -> tuple[list[tuple[str, bytes | None]], int]:
    """The headers a refusal keeps, in order, and how many it leaves off: each whole header
    while the names and values so far fit in KEPT_HEADER_BYTES; none after the first that
    does not (so what is kept is always the record's first headers)."""
    kept: list[tuple[str, bytes | None]] = []
    size = 0
    for name, value in headers:
        size += len(name.encode()) + len(value or b"")
        if size > KEPT_HEADER_BYTES:
            return kept, len(headers) - len(kept)
        kept.append((name, value))
    return kept, 0


def pack_headers(headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """Headers as one value for the outbox (b"" for none): apply.lua never reads them."""
    if not headers:
        return b""
    packed: bytes = msgpack.packb([[name, value] for name, value in headers], use_bin_type=True)
    return packed


def unpack_headers(packed: bytes) -> list[tuple[str, bytes | None]]:
    """The headers `pack_headers` packed."""
    if not packed:
        return []
    return [(name, value) for name, value in msgpack.unpackb(packed, raw=False)]


def event_id(value: bytes | None) -> str:
    """The `id` of a refused record when it is a JSON object that has one, else "": what
    the log line of a refusal names it by (refusals are rare: reading it again is cheap)."""
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return ""
    found = document.get("id") if isinstance(document, dict) else None
    return found[:_MAX_EVENT_ID] if isinstance(found, str) else ""
