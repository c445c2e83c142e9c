"""What the relay renders of floor and recharge outbox entries: fields that say what they hold."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson

from charger.events.timefmt import format_time_ms
from charger.kafka.relay import render
from topics.schema import load_schema

NOW_MS = 1_000_000_123_456
EVENT_TIME = "2001-09-09T01:46:40.000Z"


def documents(entry: dict[bytes, bytes]) -> list[dict[str, Any]]:
    docs = [orjson.loads(out.value) for out in render(entry)]
    for doc in docs:
        jsonschema.Draft202012Validator(load_schema(doc["type"])).validate(doc)
    return docs


def test_a_suspension_by_a_movement_reports_the_balance_it_left() -> None:
    entry = {
        b"o": b"S",
        b"k": b"a1",
        b"a": b"-7000",
        b"c": b"ev:s3:",
        b"m": str(NOW_MS).encode(),
        b"w": EVENT_TIME.encode(),
        b"l": b"-3000",
        b"e": b"",
    }
    command, note = documents(entry)
    assert command["type"] == "account.suspended" and note["type"] == "balance_exhausted"
    for doc in (command, note):
        assert doc["available_micros"] == -7000
        assert doc["balance_micros"] == -3000
        assert doc["effective_at"] == EVENT_TIME
        assert doc["time"] == format_time_ms(NOW_MS)  # issued, not the event's time


def test_a_suspension_without_a_movement_has_no_balance() -> None:
    cut_at_ms = NOW_MS - 70
    entry = {
        b"o": b"S",
        b"k": b"a1",
        b"a": b"4000",
        b"c": b"cut:c1:",
        b"m": str(NOW_MS).encode(),
        b"x": str(cut_at_ms).encode(),
        b"e": b"ops@example.com",
    }
    command, note = documents(entry)
    assert "balance_micros" not in command and "balance_micros" not in note
    assert command["available_micros"] == 4000
    assert command["effective_at"] == format_time_ms(cut_at_ms)
    assert note["email"] == "ops@example.com"


def test_an_entry_written_by_an_earlier_version_still_renders() -> None:
    # Before: `b` held the available balance and `t` the only time.
    entry = {b"o": b"R", b"k": b"a1", b"b": b"5", b"c": b"ev:e2:", b"t": EVENT_TIME.encode()}
    (command,) = documents(entry)
    assert command["available_micros"] == 5
    assert command["effective_at"] == command["time"] == EVENT_TIME
    assert "balance_micros" not in command


def test_a_recharge_request_says_available_and_balance() -> None:
    entry = {
        b"o": b"Q",
        b"k": b"a1",
        b"i": b"rq-a1-1",
        b"a": b"50000000",
        b"b": b"9000000",
        b"l": b"9500000",
        b"h": b"10000000",
        b"u": b"USD",
        b"m": str(NOW_MS).encode(),
    }
    (request,) = documents(entry)
    assert (request["available_micros"], request["balance_micros"]) == (9_000_000, 9_500_000)
