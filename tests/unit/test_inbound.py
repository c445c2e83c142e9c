"""A fetched record as the core is given it: the batch loop and the rate plan reader both
build `Inbound` with `charger.kafka.inbound.inbound_of`, which copies every field."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from charger.charging.records import Inbound
from charger.kafka.inbound import inbound_of
from charger_topics import names

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def fetched(topic: str, partition: int, **changes: Any) -> ConsumerRecord:
    """A record as aiokafka's `getmany` hands it over; no field at `Inbound`'s default."""
    values: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": 41,
        "timestamp": 1_000_000_123_456,
        "timestamp_type": 1,  # LogAppendTime
        "key": b"a1",
        "value": b'{"id":"e1","type":"sms.sent"}',
        "checksum": None,
        "serialized_key_size": 2,
        "serialized_value_size": 29,
        # In order, a duplicate and a null value, as a refused record keeps them on the DLQ.
        "headers": (("traceparent", TRACEPARENT), ("x", b"1"), ("x", None)),
    }
    values.update(changes)
    return ConsumerRecord(**values)


def expected_of(partition: TopicPartition, record: ConsumerRecord) -> dict[str, Any]:
    return {
        "topic": partition.topic,
        "partition": partition.partition,
        "offset": record.offset,
        "key": record.key,
        "value": record.value,
        "timestamp_ms": record.timestamp,
        "timestamp_type": record.timestamp_type,
        "headers": record.headers,
    }


@pytest.mark.parametrize(
    "record",
    [
        fetched(names.TELEPHONY_EVENTS, 5),
        fetched(names.RATE_PLANS, 0, key=b"intl@3", timestamp_type=0),
        fetched(names.BILLING_ACCOUNTS, 2, key=None, value=None, headers=()),  # a tombstone
    ],
    ids=["event", "rate-plan", "tombstone"],
)
def test_every_field_of_a_fetched_record_reaches_the_core(record: ConsumerRecord) -> None:
    partition = TopicPartition(record.topic, record.partition)
    inbound = inbound_of(partition, record)
    expected = expected_of(partition, record)
    # A field added to Inbound fails here until inbound_of copies it (and this test says how).
    assert {field.name for field in fields(Inbound)} == set(expected)
    assert {name: getattr(inbound, name) for name in expected} == expected
    assert inbound.source == f"{record.topic}/{record.partition}"


def test_the_headers_are_aiokafkas_own_not_a_copy() -> None:
    # Once per consumed event: the copy stays one construction with nothing built on the way.
    record = fetched(names.TELEPHONY_EVENTS, 1)
    assert inbound_of(TopicPartition(record.topic, record.partition), record).headers is (
        record.headers
    )
