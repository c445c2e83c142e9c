"""What the core renders of outbox outputs: fields that say what they hold, valid documents."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson

from charger.charging.documents import render
from charger.events.timefmt import format_time_ms
from charger.protocol import outputs as out
from charger.protocol.outputs import decode_entry, encode_entry
from charger_topics import headers as headers_of
from charger_topics import names
from charger_topics.schema import load_schema

NOW_MS = 1_000_000_123_456
EVENT_TIME = "2001-09-09T01:46:40.000Z"


def documents(output: out.Output) -> list[dict[str, Any]]:
    """The documents of `output` after a trip through the outbox wire format."""
    (read_back,) = decode_entry(encode_entry([output]))
    assert read_back == output
    docs = [orjson.loads(document.value) for document in render(read_back)]
    for doc in docs:
        if "type" in doc and doc.get("type") not in ("nope",):
            jsonschema.Draft202012Validator(load_schema(doc["type"])).validate(doc)
    return docs


def test_a_suspension_by_a_movement_reports_the_balance_it_left() -> None:
    output = out.FloorCrossed(
        True, b"a1", b"ev:s3:", -7000, NOW_MS, EVENT_TIME.encode(), None, -3000, b""
    )
    command, note = documents(output)
    assert command["type"] == "account.suspended" and note["type"] == "balance_exhausted"
    assert command["id"] == "ev:s3:account.suspended"
    for doc in (command, note):
        assert doc["available_micros"] == -7000
        assert doc["balance_micros"] == -3000
        assert doc["effective_at"] == EVENT_TIME
        assert doc["time"] == format_time_ms(NOW_MS)  # issued, not the event's time
    assert "email" not in note


def test_a_suspension_without_a_movement_has_no_balance() -> None:
    cut_at_ms = NOW_MS - 70
    output = out.FloorCrossed(
        True, b"a1", b"cut:c1:", 4000, NOW_MS, None, cut_at_ms, None, b"ops@example.com"
    )
    command, note = documents(output)
    assert "balance_micros" not in command and "balance_micros" not in note
    assert command["available_micros"] == 4000
    assert command["effective_at"] == format_time_ms(cut_at_ms)
    assert note["email"] == "ops@example.com"


def test_a_restore_is_one_command_with_its_reason() -> None:
    output = out.FloorCrossed(
        False, b"a1", b"ev:e2:", 5, NOW_MS, EVENT_TIME.encode(), None, 5, None
    )
    (command,) = documents(output)
    assert command["type"] == "account.restored" and command["reason"] == "balance_above_floor"


def test_a_recharge_request_says_available_and_balance() -> None:
    output = out.RechargeRequested(
        b"a1", b"rq-a1-1", 50_000_000, 9_000_000, 9_500_000, 10_000_000, b"USD", NOW_MS
    )
    (request,) = documents(output)
    assert (request["available_micros"], request["balance_micros"]) == (9_000_000, 9_500_000)
    assert request["id"] == request["request_id"] == "rq-a1-1"


def test_a_ledger_entry_is_its_head_closed_with_the_balance_it_left() -> None:
    head = b'{"id":"ev:e1:sms","type":"ledger.entry","amount_micros":-7900'
    output = out.LedgerEntry(b"a1", head, 12_345, b"sms", b"USD", -7900, EVENT_TIME.encode())
    (document,) = render(output)
    assert (document.topic, document.key, document.kind) == (names.LEDGER, b"a1", "ledger")
    assert orjson.loads(document.value)["balance_after_micros"] == 12_345


def test_an_expired_session_is_a_ledger_entry_and_a_notice() -> None:
    output = out.SessionExpired(b"a1", b"c1", -600_000, -100_000, NOW_MS, 60, 600_000, b"USD")
    entry, note = documents(output)
    assert entry["kind"] == "session_expired" and entry["amount_micros"] == -600_000
    assert entry["balance_after_micros"] == -100_000 and entry["id"] == "ttl:a1:c1:session_expired"
    assert note["charged_micros"] == 600_000


def test_a_refused_record_keeps_its_bytes_and_says_why_in_headers() -> None:
    output = out.Refused(b"a1", b"\xff raw", b"bad_json", b"not JSON", b"t.in", 3, 42, b"")
    (document,) = render(output)
    assert document.topic == names.DLQ and document.value == b"\xff raw"
    headers = dict(document.headers or [])
    assert headers[headers_of.ERROR] == b"bad_json"
    assert headers[headers_of.DLT_EXCEPTION_MESSAGE] == b"not JSON"
    partition = headers_of.decode_int32(headers[headers_of.DLT_ORIGINAL_PARTITION] or b"")
    offset = headers_of.decode_int64(headers[headers_of.DLT_ORIGINAL_OFFSET] or b"")
    assert (partition, offset) == (3, 42)
