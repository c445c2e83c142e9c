"""Refused records: what goes to the DLQ, planned like any other operation. Pure."""

from __future__ import annotations

import orjson

from charger.charging.records import Inbound
from charger.protocol.ops import Refuse, SlotPlan

_MAX_DETAIL = 500
_MAX_EVENT_ID = 200


def refuse(plan: SlotPlan, slots: int, record: Inbound, reason: str, detail: str) -> None:
    """Plan a refusal: `record`'s key and original bytes go to the DLQ with `reason`,
    `detail` and where the record was read.

    The op goes into the slot of the record's partition number, under the watermark of its
    source partition like every other op, so a redelivered refusal is not published twice.
    """
    plan.slot(record.partition % slots).add(
        record.source,
        record.offset,
        Refuse(
            record.key or b"",
            record.value or b"",
            reason,
            detail[:_MAX_DETAIL],
            record.topic,
            record.partition,
            record.offset,
            event_id(record.value),
        ),
    )


def event_id(value: bytes | None) -> str:
    """The `id` of a refused record when it is a JSON object that has one, else "": what
    the log line of a refusal names it by (refusals are rare: reading it again is cheap)."""
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return ""
    found = document.get("id") if isinstance(document, dict) else None
    return found[:_MAX_EVENT_ID] if isinstance(found, str) else ""
