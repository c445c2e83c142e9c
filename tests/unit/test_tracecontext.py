"""W3C trace context: which traceparents are carried, and the ones charger makes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.events.tracecontext import (
    MAX_TRACESTATE,
    TRACEPARENT_LENGTH,
    TraceMaker,
    carried,
    for_id,
    for_record,
    made,
    parse_traceparent,
    split,
    trace_headers,
)
from charger_topics.headers import TRACEPARENT, TRACESTATE

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
VALID = f"00-{TRACE}-{SPAN}-01".encode()
MADE = re.compile(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, VALID),
        (f"00-{TRACE}-{SPAN}-00".encode(), f"00-{TRACE}-{SPAN}-00".encode()),  # not sampled
        # a later version is read by its first four fields and passed on as 00
        (f"01-{TRACE}-{SPAN}-01-what-comes-next".encode(), VALID),
        (f"cc-{TRACE}-{SPAN}-09".encode(), f"00-{TRACE}-{SPAN}-09".encode()),
        (f"ff-{TRACE}-{SPAN}-01".encode(), None),  # version ff is forbidden
        (f"00-{TRACE}-{SPAN}-01-extra".encode(), None),  # version 00 is exactly 55
        (f"01-{TRACE}-{SPAN}-01extra".encode(), None),  # more only after a dash
        (f"00-{TRACE.upper()}-{SPAN}-01".encode(), None),  # lowercase hex only
        (f"00-{'0' * 32}-{SPAN}-01".encode(), None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01".encode(), None),  # all-zero span id
        (f"00-{TRACE}-{SPAN}-0g".encode(), None),
        (f"00_{TRACE}-{SPAN}-01".encode(), None),
        (f"00-{TRACE[:-1]}-{SPAN}-01".encode(), None),
        (b"", None),
        (None, None),
    ],
)
def test_a_traceparent_is_carried_only_when_valid(value: bytes | None, expected: bytes) -> None:
    assert parse_traceparent(value) == expected


def test_an_input_carries_its_traceparent_and_tracestate() -> None:
    headers = [("x", b"1"), (TRACEPARENT, VALID), (TRACESTATE, b"rojo=1"), (TRACESTATE, b"b=2")]
    trace = carried(headers)
    assert trace is not None
    assert split(trace) == (VALID, b"rojo=1,b=2")  # several tracestate headers are one list
    assert trace_headers(trace) == [(TRACEPARENT, VALID), (TRACESTATE, b"rojo=1,b=2")]
    assert carried([(TRACEPARENT, VALID)]) == VALID
    assert trace_headers(VALID) == [(TRACEPARENT, VALID)]


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("x", b"1")],
        [(TRACEPARENT, b"garbage"), (TRACESTATE, b"rojo=1")],  # its tracestate is not read
        [(TRACEPARENT, VALID), (TRACEPARENT, VALID)],  # two: as good as none
        [(TRACEPARENT, None)],
    ],
)
def test_an_input_without_one_valid_traceparent_carries_none(
    headers: list[tuple[str, bytes | None]],
) -> None:
    assert carried(headers) is None
    made_one = for_record("t", 1, 2, 3, headers)
    assert MADE.match(made_one) and made_one == for_record("t", 1, 2, 3, [])


def test_a_long_tracestate_loses_whole_members_first_the_oversized_then_from_the_end() -> None:
    oversized = b"big=" + b"x" * 200
    members = [b"m%02d=%s" % (n, b"v" * 40) for n in range(20)]  # 20 x 44 bytes, 899 joined
    trace = carried([(TRACEPARENT, VALID), (TRACESTATE, b",".join([oversized, *members]))])
    assert trace is not None
    _, state = split(trace)
    assert len(state) <= MAX_TRACESTATE
    kept = state.split(b",")
    assert oversized not in kept
    assert kept == members[: len(kept)] and len(kept) == 11  # 11 x 45 - 1 = 494 bytes


def test_a_made_traceparent_is_valid_sampled_and_the_same_for_the_same_place() -> None:
    one = for_record("telephony.events", 3, 41, 1_700_000_000_000, [])
    assert MADE.match(one) and len(one) == TRACEPARENT_LENGTH
    assert one == for_record("telephony.events", 3, 41, 1_700_000_000_000, [])
    others = {
        for_record("telephony.events", 3, 42, 1_700_000_000_000, []),
        for_record("telephony.events", 4, 41, 1_700_000_000_000, []),
        for_record("billing.accounts", 3, 41, 1_700_000_000_000, []),
        for_record("telephony.events", 3, 41, 1_700_000_000_001, []),
    }
    assert one not in others and len(others) == 4
    assert for_id("cutoff:a1:c1") == for_id("cutoff:a1:c1") != for_id("cutoff:a1:c2")


@given(st.binary(max_size=64))
def test_every_made_traceparent_parses_as_itself(identity: bytes) -> None:
    trace = made(identity)
    assert MADE.match(trace)
    assert parse_traceparent(trace) == trace


@given(
    st.sampled_from(["telephony.events", "billing.accounts", "billing.recharge-results"]),
    st.integers(0, 63),
    st.integers(0, 2**63 - 1),
    st.integers(-1, 2**62),
)
def test_the_planners_trace_maker_makes_the_same_traces(
    topic: str, partition: int, offset: int, timestamp_ms: int
) -> None:
    maker = TraceMaker()
    for _ in range(2):  # the source's hash taken, then reused
        assert maker.for_record(topic, partition, offset, timestamp_ms, []) == for_record(
            topic, partition, offset, timestamp_ms, []
        )
    assert maker.for_record(topic, partition, offset, 0, [(TRACEPARENT, VALID)]) == VALID
