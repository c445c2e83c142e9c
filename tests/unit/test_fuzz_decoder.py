"""Fuzzing what stands between Kafka and the money: the decoder, then the planner.

No input may make them raise: a raise in the batch path rewinds the batch and retries it
forever, so one poison record would stop its partition. Every record must come out either
as a decoded dict or as a refusal with a reason of the contract, and the planner must
account for every record of a batch exactly once (planned, a duplicate, or the DLQ).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charger.charging.planner import Planner
from charger.charging.records import AccountInfo, CallState, Inbound, Reads
from charger.events import REASONS, Invalid, decode
from charger.protocol.fields import AccountField
from charger.protocol.keys import Keys
from charger.rating import load_plans
from charger.runtime import default_plans_path
from charger_topics import names, reasons
from charger_topics.records import RECORDS
from tests.kit.strategies import json_like, valid_record

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INPUTS = [t for t, rt in RECORDS.items() if rt.topic in names.CO_PARTITIONED]
TOPIC_OF = {t: RECORDS[t].topic for t in INPUTS}


def dumps(value: Any, data: st.DataObject) -> bytes:
    """JSON text as a producer might write it: Python's encoder takes any int and NaN."""
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()), indent=data.draw(st.none()))
    return text.encode("utf-8", "surrogatepass")


def check(result: dict[str, Any] | Invalid) -> None:
    """The decoder's promise for any input."""
    if isinstance(result, Invalid):
        assert result.reason in REASONS, result
        assert isinstance(result.detail, str) and result.detail, result
        return
    assert result["type"] in RECORDS
    # A decoded record re-encodes to itself: what the fingerprint and the DLQ rely on.
    assert decode(orjson.dumps(result)) == result


@FAST
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    check(decode(raw))


@FAST
@given(json_like, st.data())
def test_any_json_value_decodes_or_is_refused_with_a_reason(
    value: Any, data: st.DataObject
) -> None:
    check(decode(dumps(value, data)))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid record with one field dropped, swapped for any JSON value, or a type swap."""
    record = draw(st.sampled_from(sorted(RECORDS)).flatmap(lambda t: valid_record(RECORDS[t])))
    name = draw(st.sampled_from(sorted(record)))
    op = draw(st.sampled_from(["drop", "replace", "replace", "retype"]))
    if op == "drop":
        del record[name]
    elif op == "replace":
        record[name] = draw(json_like)
    else:
        record["type"] = draw(st.sampled_from(sorted(RECORDS)))
    return json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@FAST
@given(mutated())
def test_mutated_records_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    check(decode(raw))


@FAST
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda t: valid_record(RECORDS[t])), st.data())
def test_byte_edits_of_a_valid_record_never_raise(
    record: dict[str, Any], data: st.DataObject
) -> None:
    raw = bytearray(orjson.dumps(record))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        byte = data.draw(st.integers(0, 255))
        how = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if how == "insert":
            raw.insert(at, byte)
        elif at < len(raw):
            if how == "set":
                raw[at] = byte
            else:
                del raw[at]
    check(decode(bytes(raw)))


@FAST
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda t: valid_record(RECORDS[t])), st.data())
def test_a_valid_record_decodes_to_itself_however_it_is_written(
    record: dict[str, Any], data: st.DataObject
) -> None:
    shuffled = dict(data.draw(st.permutations(list(record.items()))))
    assert decode(dumps(shuffled, data)) == record


# --- the planner on what the decoder lets through, and on what it does not ---------------

PLANS = load_plans(default_plans_path())
KNOWN = {"a1": AccountInfo("USD", "std-usd", 0), "a2": AccountInfo("UAH", "local-uah", 5_000_000)}
STATES = ["active", "cut", "expired", "ended", "pending_end"]


@st.composite
def inbound(draw: st.DrawFn, offset: int) -> Inbound:
    """One record as the batch loop would hand it over: mostly valid, for known accounts."""
    rtype = draw(st.sampled_from(INPUTS))
    record = draw(valid_record(RECORDS[rtype]))
    record["account"] = draw(st.sampled_from(["a1", "a2", "nobody"]))
    for name, pick in (
        ("id", st.sampled_from(["e1", "e2", "e3"])),  # repeats: duplicates and conflicts
        ("call_id", st.sampled_from(["c1", "c2"])),
        ("to", st.sampled_from(["+14155550100", "+442071234567", "+380441234567", "x"])),
        ("request_id", st.sampled_from(["rq-a1-1", "rq-a2-1"])),
        ("currency", st.sampled_from(["USD", "UAH", "EUR"])),
        ("rate_plan", st.sampled_from(["std-usd", "local-uah", "pro-usd", "gone"])),
        ("notify_email", st.sampled_from(["ops@example.com", "nobody"])),
    ):
        if name in record:
            record[name] = draw(pick)
    valid = st.just(orjson.dumps(record))
    raw = draw(st.one_of(valid, valid, valid, valid, mutated(), st.binary(max_size=60)))
    key = draw(st.sampled_from([record["account"].encode(), b"a1", None]))
    return Inbound(TOPIC_OF[rtype], draw(st.integers(0, 7)), offset, key, raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(*(inbound(i) for i in range(n)))), st.data())
def test_the_planner_accounts_for_every_record_and_never_raises(
    batch: tuple[Inbound, ...], data: st.DataObject
) -> None:
    planner = Planner(Keys("t", 8), lambda: PLANS, dict(KNOWN))
    prepared = planner.prepare(list(batch))
    reads = Reads()
    for key in prepared.call_keys:
        state = data.draw(st.none() | st.sampled_from(STATES))
        if state is not None:
            reads.calls[key] = CallState(
                state,
                direction=data.draw(st.sampled_from(["outbound", "inbound", "forwarded"])),
                number_to=data.draw(st.sampled_from(["+14155550100", "+380441234567"])),
                duration_ms=data.draw(st.integers(0, 7 * 86_400_000)),
                end_id="e9",
                end_time="2026-11-22T10:00:00.000Z",
                charged=data.draw(st.integers(0, 10**9)),
            )
    for where in prepared.request_fields:
        if where[1] == AccountField.RECHARGE_SEQUENCE:  # a count (HINCRBY), or none yet
            reads.requests[where] = data.draw(st.none() | st.integers(0, 3).map(str))
            continue
        reads.requests[where] = data.draw(st.sampled_from([None, "pending", "succeeded", "failed"]))
    out = planner.plan(prepared, reads)
    assert sum(out.results.values()) + sum(out.dlq.values()) == len(batch)
    assert set(out.dlq) <= set(REASONS) | set(reasons.PLANNER)
    for sb in out.plan.slots.values():
        values, _ = sb.encode()
        # never a float; False only for a refused record's null key or value
        assert all(type(a) in (str, bytes, int, bool) for a in values)
        assert all(a is False for a in values if type(a) is bool)
