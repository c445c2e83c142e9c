"""Kafka record headers of the contract: trace context on every record, and the DLQ's.

**Trace context.** Every record charger publishes carries a W3C `traceparent` (and the
`tracestate` of its cause, when it had one), as OpenTelemetry's Kafka instrumentations
read and write them: one header each, the header text as UTF-8 bytes. An input may carry
them too; charger then passes them on unchanged to what that input causes.

**The DLQ** follows Spring for Apache Kafka's dead-letter convention (`kafka_dlt-*`,
`DeadLetterPublishingRecoverer`): the refused record's own headers first, untouched and in
order, then the `kafka_dlt-original-*` headers naming where and when it was read, then why
it was refused. Spring's rather than Kafka Connect's (`__connect.errors.*`) because only
Spring's names the original record's timestamp and timestamp type (Connect overwrites the
dead-letter record's own timestamp, losing the type and shortening the DLQ's retention of
old records), and because it is what application code consuming a dead-letter topic most
often already reads. Its binary encodings are kept exactly (a Spring consumer decodes
them with `ByteBuffer.getInt/getLong`): see `encode_int32` and `encode_int64`.

charger's own reason code stays in `charger.error` beside the convention (it labels
`charger_dlq_total`, and platforms switch on it), and is also the last part of
`kafka_dlt-exception-fqcn` (`charger.refused.<reason>`), where Spring-aware tools group
dead letters.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "DLQ_HEADERS",
    "DLQ_REQUIRED",
    "DLT_EXCEPTION_FQCN",
    "DLT_EXCEPTION_MESSAGE",
    "DLT_ORIGINAL_OFFSET",
    "DLT_ORIGINAL_PARTITION",
    "DLT_ORIGINAL_TIMESTAMP",
    "DLT_ORIGINAL_TIMESTAMP_TYPE",
    "DLT_ORIGINAL_TOPIC",
    "ERROR",
    "HEADERS_DROPPED",
    "KEPT_HEADER_BYTES",
    "TIMESTAMP_TYPES",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_HEADERS",
    "decode_int32",
    "decode_int64",
    "encode_int32",
    "encode_int64",
    "exception_fqcn",
    "last",
]

# W3C Trace Context (https://www.w3.org/TR/trace-context/), as header names on Kafka.
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

# Spring for Apache Kafka's dead-letter headers (KafkaHeaders.DLT_*).
DLT_ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
DLT_ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
DLT_ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
DLT_ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
DLT_ORIGINAL_TIMESTAMP_TYPE: Final = "kafka_dlt-original-timestamp-type"
DLT_EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
DLT_EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"

# charger's own: the reason code, and how many of the record's headers were left off.
ERROR: Final = "charger.error"
HEADERS_DROPPED: Final = "charger.headers.dropped"

# A refused record keeps its headers whole, in order, while their names and values add up
# to this many bytes; the rest are left off (never cut) and counted in HEADERS_DROPPED.
# Real producers send a few hundred bytes of headers; the bound keeps a refusal, which
# waits in Redis until the relay publishes it, from carrying an unbounded list.
KEPT_HEADER_BYTES: Final = 16 * 1024

# Kafka's timestamp types by the number the protocol (and aiokafka) gives them, named as
# Java's TimestampType.toString() names them, which is what Spring writes.
TIMESTAMP_TYPES: Final[dict[int, str]] = {
    -1: "NoTimestampType",
    0: "CreateTime",
    1: "LogAppendTime",
}

# Every header of a DLQ record after the refused record's own, and what it holds.
DLQ_HEADERS: Final[dict[str, str]] = {
    DLT_ORIGINAL_TOPIC: "Topic the refused record was read from (UTF-8).",
    DLT_ORIGINAL_PARTITION: "Partition it was read from: a 4-byte big-endian signed integer.",
    DLT_ORIGINAL_OFFSET: "Offset it was read from: an 8-byte big-endian signed integer.",
    DLT_ORIGINAL_TIMESTAMP: (
        "Its Kafka timestamp, epoch milliseconds: an 8-byte big-endian signed integer (-1: none)."
    ),
    DLT_ORIGINAL_TIMESTAMP_TYPE: (
        "What that timestamp is: CreateTime (set by its producer), LogAppendTime (by the "
        "broker) or NoTimestampType."
    ),
    DLT_EXCEPTION_FQCN: "charger.refused.<reason>: the reason code under charger's namespace.",
    DLT_EXCEPTION_MESSAGE: "A sentence naming the field and the value refused (UTF-8).",
    ERROR: "The reason code (also the label of charger_dlq_total), one of charger_topics.reasons.",
    HEADERS_DROPPED: (
        "Only when some were left off: how many of the record's own headers did not fit "
        "in 16 KiB (decimal)."
    ),
    TRACEPARENT: (
        "Only when the refused record had none of its own: the W3C trace context charger "
        "made for it."
    ),
}
DLQ_REQUIRED: Final = tuple(h for h in DLQ_HEADERS if h not in (HEADERS_DROPPED, TRACEPARENT))

# The trace headers of every other record charger publishes.
TRACE_HEADERS: Final[dict[str, str]] = {
    TRACEPARENT: (
        "W3C trace context (version 00): the traceparent of the input that caused this "
        "record, unchanged (same trace id and parent id: charger records no spans, so this "
        "record is a child of the span that produced the input); or one charger made, for "
        "an input without one (derived from the input's topic, partition, offset and "
        "timestamp, so a record re-created after a crash or a Redis failover carries the "
        "same) or for a record no input caused (derived from the record's id)."
    ),
    TRACESTATE: "The tracestate of the input that caused this record, when it had one.",
}

_INT32: Final = struct.Struct(">i")
_INT64: Final = struct.Struct(">q")


def encode_int32(value: int) -> bytes:
    """A partition as Spring writes it: 4 bytes, big-endian, signed."""
    return _INT32.pack(value)


def encode_int64(value: int) -> bytes:
    """An offset or a timestamp as Spring writes it: 8 bytes, big-endian, signed."""
    return _INT64.pack(value)


def decode_int32(value: bytes) -> int:
    number: int = _INT32.unpack(value)[0]
    return number


def decode_int64(value: bytes) -> int:
    number: int = _INT64.unpack(value)[0]
    return number


def exception_fqcn(reason: str) -> str:
    """The `kafka_dlt-exception-fqcn` of a refusal for `reason`."""
    return f"charger.refused.{reason}"


def last(headers: list[tuple[str, bytes | None]], name: str) -> bytes | None:
    """The value of the last header called `name` (a refused record may have carried one
    of that name already: the last is charger's, as Spring's `lastHeader` reads it)."""
    for key, value in reversed(headers):
        if key == name:
            return value
    return None
