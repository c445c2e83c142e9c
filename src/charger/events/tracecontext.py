"""W3C Trace Context for charger's records: carried from an input, or made for it. Pure.

What travels with an op to apply.lua, and with each output back to the relay, is one
bytes value, the *trace*: a normalised version-00 `traceparent` (always 55 bytes), then the
`tracestate` of the cause if it had one. Empty: not known yet (an output of a tick), and
the relay makes one from the output's id.

- An input with a valid `traceparent` header passes it on unchanged, with its
  `tracestate`: charger records no spans of its own, so its outputs are children of the
  span that produced the input, and the trace stays whole in a tracing backend (a span id
  of charger's own would name a span no backend ever receives). A version above 00 is
  read by its first four fields and passed on as 00, as the specification asks.
- An input without one (or with one that does not parse, or with two) gets one made from
  where it was read: a hash of its topic, partition, offset and Kafka timestamp gives the
  trace id and the span id. Not random but as good as random to a sampler, and the same
  every time the record is applied: after a crash between apply and publish the outbox
  holds the same trace; after Redis forgot and the worker applied the record again from
  Kafka, the outputs are re-created with the same ids, content and headers. Every output
  of that input shares it, as they would share a carried one.
- An output no single input caused (a tick's cutoff or session expiry, a scheduled
  subscription fee) gets one made the same way from its id.

Made traces have the sampled flag set: charger samples nothing itself, so the decision is
left to the consumers' samplers, which then treat the output like a root (OpenTelemetry's
default parent-based sampler records it, as it would record a root span). The random
trace-id flag of Trace Context level 2 is not set: the ids are derived, not drawn.
"""

from __future__ import annotations

import struct
from binascii import hexlify
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any, Final

from charger_topics.headers import TRACEPARENT, TRACESTATE

__all__ = [
    "MAX_TRACESTATE",
    "TRACEPARENT_LENGTH",
    "TraceMaker",
    "carried",
    "for_id",
    "for_record",
    "made",
    "parse_traceparent",
    "split",
    "trace_headers",
]

TRACEPARENT_LENGTH: Final = 55  # "00-" 32 hex "-" 16 hex "-" 2 hex
# A tracestate longer than this loses list members from its end (W3C: vendors keep at
# least 512 characters).
MAX_TRACESTATE: Final = 512
_PERSON: Final = b"charger.trace"  # keeps charger's hashes apart from any other use
_HEX: Final = frozenset(b"0123456789abcdef")
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16
_SAMPLED: Final = b"01"
# An input's place after its "topic/partition/": offset and Kafka timestamp, signed 64-bit.
_WHERE: Final = struct.Struct(">qq")


def parse_traceparent(value: bytes | None) -> bytes | None:
    """`value` as a version-00 traceparent, or None when it is not a valid one."""
    if value is None or len(value) < TRACEPARENT_LENGTH:
        return None
    version = value[:2]
    if not _is_hex(version) or version == b"ff":
        return None
    if version == b"00" and len(value) != TRACEPARENT_LENGTH:
        return None
    if len(value) > TRACEPARENT_LENGTH and value[TRACEPARENT_LENGTH] != ord("-"):
        return None  # a later version may only add fields after a dash
    if value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    trace_id, span_id, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(trace_id) and _is_hex(span_id) and _is_hex(flags)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == b"00":
        return value
    return b"00-%b-%b-%b" % (trace_id, span_id, flags)


def _is_hex(text: bytes) -> bool:
    return bool(text) and _HEX.issuperset(text)


def _tracestate(values: list[bytes]) -> bytes:
    """The tracestate headers of an input as one list, trimmed to MAX_TRACESTATE by whole
    list members: first those over 128 characters, then from the end (W3C's order)."""
    members = [m.strip() for v in values for m in v.split(b",") if m.strip()]
    while members and len(b",".join(members)) > MAX_TRACESTATE:
        long = next((i for i, m in enumerate(members) if len(m) > 128), None)
        members.pop(long if long is not None else -1)
    return b",".join(members)


def carried(headers: Sequence[tuple[str, bytes | None]]) -> bytes | None:
    """The trace an input's headers carry, or None when they hold no valid traceparent."""
    parents = [value for name, value in headers if name == TRACEPARENT]
    if len(parents) != 1:
        return None  # none, or two that may disagree: as good as none
    parent = parse_traceparent(parents[0])
    if parent is None:
        return None  # and its tracestate is not read, as the specification asks
    states = [value for name, value in headers if name == TRACESTATE and value]
    return parent + _tracestate(states) if states else parent


def _hash(data: bytes = b"") -> Any:
    return blake2b(data, digest_size=24, person=_PERSON)


def _traceparent(digest: bytes, identity: bytes) -> bytes:
    text = hexlify(digest)
    trace_id, span_id = text[:32], text[32:]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:  # 2**-64 odds: W3C forbids them
        return made(identity + b"'")
    return b"00-%b-%b-%b" % (trace_id, span_id, _SAMPLED)


def made(identity: bytes) -> bytes:
    """A traceparent derived from `identity`: the same one for the same identity."""
    return _traceparent(_hash(identity).digest(), identity)


def _source(topic: str, partition: int) -> bytes:
    return f"{topic}/{partition}/".encode()


def _where(offset: int, timestamp_ms: int) -> bytes:
    return _WHERE.pack(offset, timestamp_ms)


def for_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    headers: Sequence[tuple[str, bytes | None]],
) -> bytes:
    """The trace of an input record: carried by its headers, else made from where it was
    read (the same whenever it is read again)."""
    if headers:
        found = carried(headers)
        if found is not None:
            return found
    return made(_source(topic, partition) + _where(offset, timestamp_ms))


class TraceMaker:
    """`for_record` for the hot path: the hash of each source partition's name is taken
    once and copied for each of its records (the same traces, a third of the work)."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, int], Any] = {}

    def for_record(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        headers: Sequence[tuple[str, bytes | None]],
    ) -> bytes:
        if headers:
            found = carried(headers)
            if found is not None:
                return found
        source = self._sources.get((topic, partition))
        if source is None:
            source = self._sources[(topic, partition)] = _hash(_source(topic, partition))
        digest = source.copy()
        where = _where(offset, timestamp_ms)
        digest.update(where)
        return _traceparent(digest.digest(), _source(topic, partition) + where)


def for_id(output_id: str) -> bytes:
    """The trace of an output no input caused, from its id."""
    return made(output_id.encode())


def split(trace: bytes) -> tuple[bytes, bytes]:
    """A trace's traceparent and tracestate (empty when it has none)."""
    return trace[:TRACEPARENT_LENGTH], trace[TRACEPARENT_LENGTH:]


def trace_headers(trace: bytes) -> list[tuple[str, bytes | None]]:
    """The record headers of a trace."""
    if len(trace) == TRACEPARENT_LENGTH:
        return [(TRACEPARENT, trace)]
    parent, state = split(trace)
    return [(TRACEPARENT, parent), (TRACESTATE, state)]
