"""The headers of every record charger publishes, as the core renders them: the trace
context of its cause on each, and on a DLQ record the refused record's own headers with
Spring's dead-letter headers, whatever the outbox round trip."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.charging.documents import render
from charger.charging.records import Inbound
from charger.charging.refusals import keep_headers, pack_headers, refuse, unpack_headers
from charger.events.tracecontext import for_id, for_record
from charger.protocol import outputs as out
from charger.protocol.ops import Refuse, SlotPlan
from charger.protocol.outputs import decode_entry, encode_entry
from charger_topics import headers as headers_of
from charger_topics import names

TRACE = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = b"rojo=00f067aa0ba902b7"
NOW_MS = 1_000_000_123_456
EVENT_TIME = b"2001-09-09T01:46:40.000Z"
HEAD = b'{"id":"ev:e1:sms","type":"ledger.entry","amount_micros":-7900'

# One output of every kind that publishes something, without its trace context.
OUTPUTS: list[out.Output] = [
    out.LedgerEntry(b"a1", HEAD, 12_345, b"sms", b"USD", -7900, EVENT_TIME),
    out.FloorCrossed(True, b"a1", b"ev:s3:", -7000, NOW_MS, EVENT_TIME, None, -3000, b"x@y.z"),
    out.FloorCrossed(False, b"a1", b"ev:e2:", 5, NOW_MS, EVENT_TIME, None, 5, None),
    out.CallCut(b"a1", b"c1", NOW_MS - 70, NOW_MS, b"x@y.z"),
    out.SessionExpired(b"a1", b"c1", -600_000, -100_000, NOW_MS, 60, 600_000, b"USD"),
    out.RechargeRequested(b"a1", b"rq-a1-1", 50_000_000, 9, 9, 10, b"USD", NOW_MS),
    out.RechargeDeclined(b"a1", b"rq-a1-1", b"card declined", 9, 10, b"x@y.z", NOW_MS),
    out.FeeApplied(b"a1", b"f1", b"ac:f1:fee", 5_000_000, 1, NOW_MS),
    out.FeeRefused(b"a1", b"f1", b"insufficient_funds", 1, NOW_MS),
    out.LowBalance(b"a1", 3, 9, 10, b"x@y.z", NOW_MS),
]


def through_the_outbox(output: out.Output) -> out.Output:
    (read_back,) = decode_entry(encode_entry([output]))
    assert read_back == output
    return read_back


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: type(o).__name__)
def test_every_record_of_an_output_carries_its_causes_trace_context(output: out.Output) -> None:
    traced = through_the_outbox(output._replace(trace=TRACE + STATE))
    documents = render(traced)
    assert documents
    for document in documents:
        assert document.headers == [
            (headers_of.TRACEPARENT, TRACE),
            (headers_of.TRACESTATE, STATE),
        ], document


@pytest.mark.parametrize("output", OUTPUTS, ids=lambda o: type(o).__name__)
def test_an_output_no_input_caused_gets_one_made_from_its_first_records_id(
    output: out.Output,
) -> None:
    documents = render(through_the_outbox(output))  # a tick's: no trace context
    first_id = orjson.loads(documents[0].value or b"")["id"]
    for document in documents:
        assert document.headers == [(headers_of.TRACEPARENT, for_id(first_id))]


def test_an_output_of_an_earlier_build_reads_without_a_trace_context() -> None:
    ledger = OUTPUTS[0]
    older = encode_entry([ledger])  # the same values ...
    items = msgpack.unpackb(older[out.OUTBOX_FIELD], raw=True)
    items[0] = items[0][:-1]  # ... without the trace at the end
    entry = {out.OUTBOX_FIELD: msgpack.packb(items, use_bin_type=False)}
    (read,) = decode_entry(entry)
    assert read == ledger and read.trace == b""
    full = msgpack.unpackb(encode_entry([ledger])[out.OUTBOX_FIELD], raw=True)
    later = [[*full[0], b"a field of a later build"]]
    newer = {out.OUTBOX_FIELD: msgpack.packb(later, use_bin_type=False)}
    assert decode_entry(newer) == [ledger]


def refused_record(headers: list[tuple[str, bytes | None]], **changes: object) -> Inbound:
    record = Inbound(
        names.TELEPHONY_EVENTS, 5, 77, b"a1", b"{not json", 1_700_000_000_123, 1, headers
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def dlq_record_of(record: Inbound) -> list[tuple[str, bytes | None]]:
    plan = SlotPlan()
    refuse(plan, 8, record, "malformed_json", "not one JSON document")
    (op,) = plan.all_ops()
    assert isinstance(op, Refuse)
    batch = plan.slots[5]
    # what apply.lua emits: the op's fields (False for a null) and the trace beside it
    values = (value.encode() if isinstance(value, str) else value for value in op)
    emitted = out.Refused(
        *(None if value is False else value for value in values), trace=batch.traces[0]
    )
    (document,) = render(through_the_outbox(emitted))
    assert document.topic == names.DLQ
    assert (document.key, document.value) == (record.key, record.value)
    return document.headers or []


def test_a_dlq_record_keeps_the_records_headers_then_springs_and_the_reason() -> None:
    own: list[tuple[str, bytes | None]] = [
        ("x-dup", b"1"),
        ("x-dup", b"2"),
        ("x-null", None),
        (headers_of.TRACEPARENT, TRACE),
    ]
    headers = dlq_record_of(refused_record(own))
    assert headers[: len(own)] == own
    assert headers[len(own) :] == [
        (headers_of.DLT_ORIGINAL_TOPIC, names.TELEPHONY_EVENTS.encode()),
        (headers_of.DLT_ORIGINAL_PARTITION, b"\x00\x00\x00\x05"),
        (headers_of.DLT_ORIGINAL_OFFSET, b"\x00\x00\x00\x00\x00\x00\x00\x4d"),
        (headers_of.DLT_ORIGINAL_TIMESTAMP, (1_700_000_000_123).to_bytes(8, "big")),
        (headers_of.DLT_ORIGINAL_TIMESTAMP_TYPE, b"LogAppendTime"),
        (headers_of.DLT_EXCEPTION_FQCN, b"charger.refused.malformed_json"),
        (headers_of.DLT_EXCEPTION_MESSAGE, b"not one JSON document"),
        (headers_of.ERROR, b"malformed_json"),
    ]  # and no traceparent of charger's: the record had its own


def test_a_dlq_record_without_a_traceparent_gets_the_one_made_for_its_record() -> None:
    record = refused_record([], key=None, value=None, timestamp_type=0)
    headers = dlq_record_of(record)
    made = for_record(record.topic, record.partition, record.offset, record.timestamp_ms, [])
    assert headers[-1] == (headers_of.TRACEPARENT, made)
    assert dict(headers)[headers_of.DLT_ORIGINAL_TIMESTAMP_TYPE] == b"CreateTime"


def test_headers_past_16_kib_are_left_off_whole_and_counted() -> None:
    name = "x-big"
    fits = headers_of.KEPT_HEADER_BYTES // 4 - len(name)
    own: list[tuple[str, bytes | None]] = [(name, b"v" * fits)] * 4  # exactly 16 KiB
    assert keep_headers(own) == (own, 0)
    over = [*own[:3], (name, b"v" * (fits + 1)), ("x-small", b"1")]
    assert keep_headers(over) == (own[:3], 2)  # none after the first that does not fit
    headers = dlq_record_of(refused_record(over))
    assert headers[:3] == own[:3]
    assert dict(headers)[headers_of.HEADERS_DROPPED] == b"2"


@given(st.lists(st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=50)), max_size=10))
def test_kept_headers_come_back_from_the_outbox_as_they_were(
    headers: list[tuple[str, bytes | None]],
) -> None:
    assert unpack_headers(pack_headers(headers)) == headers
