"""The hot-path decoder: a reason per refusal, and agreement with the published schemas."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charger.events import REASONS, Invalid, decode, format_time_ms, parse_time_ms
from charger.events.timefmt import MAX_TIME_MS, MIN_TIME_MS, TIME_RE, is_time
from charger_topics.records import RECORDS, Field
from charger_topics.schema import record_schema
from tests.kit.strategies import json_values, record_fields, times, valid_record

T = "2026-11-22T10:00:00.123Z"
EVENTS = frozenset({"call.started", "call.ended", "call.attempt", "sms.sent", "sms.received"})


def ended(**changes: Any) -> bytes:
    record: dict[str, Any] = {
        "id": "e-1",
        "type": "call.ended",
        "account": "acc-1",
        "time": T,
        "call_id": "c-1",
        "duration_ms": 61_000,
    }
    record.update(changes)
    return orjson.dumps({k: v for k, v in record.items() if v is not DROP})


DROP = object()
UPSERT = {
    "id": "a-1",
    "type": "account.upserted",
    "account": "acc-1",
    "time": T,
    "currency": "USD",
    "rate_plan": "standard",
    "credit_limit_micros": 0,
}

SMS = {
    "id": "s-1",
    "type": "sms.sent",
    "account": "acc-1",
    "time": T,
    "message_id": "m-1",
    "to": "+14155550100",
}

BAD: list[tuple[str, bytes | None, str]] = [
    ("none", None, "empty_record"),
    ("empty", b"", "empty_record"),
    ("truncated", b'{"id": "e-1"', "malformed_json"),
    ("not utf-8", b'{"id": "\xff"}', "invalid_utf8"),
    ("nan", b'{"duration_ms": NaN}', "malformed_json"),
    ("byte order mark", b"\xef\xbb\xbf" + ended(), "malformed_json"),
    ("nested 2000 deep", b"[" * 2000 + b"]" * 2000, "too_deeply_nested"),
    ("array", b"[1, 2]", "not_an_object"),
    ("string", b'"call.ended"', "not_an_object"),
    ("too large", ended(pad="x" * 65_536), "record_too_large"),
    ("no type", ended(type=DROP), "missing_field"),
    ("unknown type", ended(type="call.exploded"), "unknown_type"),
    ("type not a string", ended(type=["call.ended"]), "unknown_type"),
    ("no call_id", ended(call_id=DROP), "missing_field"),
    ("no account", ended(account=DROP), "missing_field"),
    ("no id", ended(id=DROP), "missing_field"),
    ("duration as string", ended(duration_ms="61000"), "wrong_type"),
    ("duration as bool", ended(duration_ms=True), "wrong_type"),
    ("duration as whole float", ended(duration_ms=61000.0), "wrong_type"),
    ("duration null", ended(duration_ms=None), "wrong_type"),
    ("account as number", ended(account=42), "wrong_type"),
    ("time as number", ended(time=1_795_341_600_123), "wrong_type"),
    ("negative duration", ended(duration_ms=-5), "negative_value"),
    ("week-long call", ended(duration_ms=10**12), "value_too_large"),
    (
        "duration beyond 64 bits",
        ended(duration_ms=1).replace(b":1}", b":1" + b"0" * 20 + b"}"),
        "value_too_large",
    ),
    ("empty call_id", ended(call_id=""), "out_of_range"),
    ("long call_id", ended(call_id="c" * 129), "value_too_large"),
    ("no segments", orjson.dumps(SMS | {"segments": 0}), "out_of_range"),
    ("bad direction", ended(direction="sideways"), "out_of_range"),
    ("time without millis", ended(time="2026-11-22T10:00:00Z"), "invalid_time"),
    ("time with offset", ended(time="2026-11-22T10:00:00.123+01:00"), "invalid_time"),
    ("time with space", ended(time="2026-11-22 10:00:00.123Z"), "invalid_time"),
    ("february 30", ended(time="2026-02-30T10:00:00.123Z"), "invalid_time"),
    ("not a leap year", ended(time="2100-02-29T10:00:00.123Z"), "invalid_time"),
    ("hour 24", ended(time="2026-11-22T24:00:00.000Z"), "invalid_time"),
    ("trailing newline", ended(time=T + "\n"), "invalid_time"),
    (
        "nested wrong type",
        orjson.dumps(UPSERT | {"auto_recharge": {"enabled": 1, "threshold_micros": 0}}),
        "wrong_type",
    ),
    (
        "nested missing",
        orjson.dumps(UPSERT | {"auto_recharge": {"enabled": True, "threshold_micros": 0}}),
        "missing_field",
    ),
    (
        "plan not an object",
        orjson.dumps({**UPSERT, "type": "rate_plan.upserted", "plan": []}),
        "wrong_type",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_record_is_refused_with_its_reason(raw: bytes | None, reason: str) -> None:
    result = decode(raw)
    assert isinstance(result, Invalid)
    assert result.reason == reason, result
    assert result.detail


def test_every_reason_is_exercised() -> None:
    # wrong_topic needs the topic's types: test_type_outside_allowed_types_is_a_wrong_topic
    assert {b[2] for b in BAD} | {"wrong_topic"} == set(REASONS)


def test_detail_names_type_and_field() -> None:
    result = decode(ended(duration_ms=-5))
    assert result == Invalid(
        "negative_value", "call.ended: duration_ms must not be negative, got -5"
    )
    nested = decode(
        orjson.dumps(
            UPSERT
            | {"auto_recharge": {"enabled": True, "threshold_micros": -1, "amount_micros": 1}}
        )
    )
    assert isinstance(nested, Invalid)
    assert "auto_recharge.threshold_micros" in nested.detail


def test_type_outside_allowed_types_is_a_wrong_topic() -> None:
    assert not isinstance(decode(ended(), EVENTS), Invalid)
    refused = decode(orjson.dumps(UPSERT), EVENTS)
    assert isinstance(refused, Invalid) and refused.reason == "wrong_topic"
    assert "'account.upserted'" in refused.detail


def test_accepts_extras_and_optional_account_and_any_plan() -> None:
    assert not isinstance(decode(ended(extra={"any": [1.5, None]}, direction="inbound")), Invalid)
    assert not isinstance(decode(ended(extra=1)), Invalid)
    plan = {"id": "p-1", "type": "rate_plan.upserted", "time": T, "plan": {"x": 1.5}}
    assert decode(orjson.dumps(plan)) == plan


def test_size_limit_is_inclusive() -> None:
    base = ended(pad="")
    exact = ended(pad="x" * (64 * 1024 - len(base)))
    assert len(exact) == 64 * 1024
    assert not isinstance(decode(exact), Invalid)


# --- agreement with the JSON Schemas -------------------------------------------------------


def invalid_value(f: Field) -> st.SearchStrategy[Any]:
    """Values that are often (not always) wrong for ``f``; the schema decides which."""
    edge = ["", "x" * f.max_length, "x" * (f.max_length + 1), T + "\n", T[:-1] + "+00:00"]
    near: list[st.SearchStrategy[Any]] = [
        json_values.filter(lambda v: not (isinstance(v, float) and v.is_integer())),
        st.text(max_size=f.max_length + 2),
        st.sampled_from(edge),
        times.map(lambda s: s + "0"),
        st.from_regex(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,4})?(Z|\+01:00)?",
            fullmatch=True,
        ),
    ]
    if f.minimum is not None:
        near.append(st.sampled_from([f.minimum - 1, f.minimum]))
    if f.maximum is not None:
        near.append(st.sampled_from([f.maximum, f.maximum + 1]))
    if f.values:
        near.append(st.sampled_from([*f.values, f.values[0].upper(), ""]))
    return st.one_of(near)


@cache
def validator(rtype: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(record_schema(RECORDS[rtype]))


# Replacing a value is the mutation with the most ways to go wrong: weight it.
MUTATIONS = ("replace", "replace", "replace", "drop", "extra", "retype", "nested", "nested")


@st.composite
def mutated_record(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    rt = draw(st.sampled_from(sorted(RECORDS.values(), key=lambda r: r.type)))
    record = draw(valid_record(rt))
    fields, _ = record_fields(rt)
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(MUTATIONS))
        name = draw(st.sampled_from(sorted(fields)))
        if op == "drop":
            record.pop(name, None)
        elif op == "replace":
            record[name] = draw(invalid_value(fields[name]))
        elif op == "extra":
            record[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
        elif op == "retype":
            record["type"] = draw(st.sampled_from([*RECORDS, "call.exploded", 7]))
        elif isinstance(record.get("auto_recharge"), dict):
            inner = fields["auto_recharge"].fields
            member = draw(st.sampled_from(sorted(inner)))
            record["auto_recharge"][member] = draw(invalid_value(inner[member]))
    return rt.type, record


def minimal(f: Field) -> Any:
    """A fixed valid value for ``f``."""
    if f.kind == "object":
        return {k: minimal(v) for k, v in f.fields.items() if k not in f.optional}
    if f.kind == "integer":
        return min(max(0, f.minimum or 0), f.maximum if f.maximum is not None else 0)
    return {"string": "x", "time": T, "boolean": True, "enum": (f.values or ("",))[0]}[f.kind]


def edges(f: Field) -> list[Any]:
    """Values at and just past every bound of ``f``, plus every other JSON type."""
    out: list[Any] = [None, True, 1.5, [], {}, 0, "", "x", T, T + "\n", "2026-02-29T00:00:00.000Z"]
    out += ["x" * f.max_length, "x" * (f.max_length + 1), *f.values, *(v.upper() for v in f.values)]
    out += [b + d for b in (f.minimum, f.maximum) if b is not None for d in (-1, 0, 1)]
    return out


def boundary_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for rt in RECORDS.values():
        fields, optional = record_fields(rt)
        base = {k: minimal(f) for k, f in fields.items() if k not in optional}
        base["type"] = rt.type
        for name, f in fields.items():
            cases += [(rt.type, base | {name: v}) for v in edges(f)]
            for member, mf in f.fields.items():
                cases += [(rt.type, base | {name: minimal(f) | {member: v}}) for v in edges(mf)]
    return cases


def test_decoder_agrees_with_json_schema_at_every_bound() -> None:
    for rtype, record in boundary_cases():
        raw = orjson.dumps(record)
        schema_ok = validator(rtype).is_valid(orjson.loads(raw))
        result = decode(raw, frozenset({rtype}))
        assert (not isinstance(result, Invalid)) == schema_ok, (result, record)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_record())
def test_decoder_agrees_with_json_schema(case: tuple[str, dict[str, Any]]) -> None:
    rtype, record = case
    raw = orjson.dumps(record)
    schema_ok = validator(rtype).is_valid(orjson.loads(raw))
    result = decode(raw, frozenset({rtype}))
    if isinstance(result, Invalid):
        assert result.reason in REASONS
    assert (not isinstance(result, Invalid)) == schema_ok, (result, record)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(RECORDS)).flatmap(lambda t: valid_record(RECORDS[t])))
def test_generated_valid_records_pass(record: dict[str, Any]) -> None:
    assert validator(record["type"]).is_valid(record)
    assert decode(orjson.dumps(record)) == record


# --- time conversions ----------------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@given(st.integers(MIN_TIME_MS, MAX_TIME_MS))
def test_format_then_parse_is_identity(ms: int) -> None:
    text = format_time_ms(ms)
    assert parse_time_ms(text) == ms
    assert validator("call.ended").is_valid(orjson.loads(ended(time=text)))


@given(times)
def test_parse_then_format_is_identity(text: str) -> None:
    assert format_time_ms(parse_time_ms(text)) == text


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), timezones=st.just(dt.UTC)))
def test_parse_matches_datetime(moment: dt.datetime) -> None:
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )
    assert parse_time_ms(text) == (moment - EPOCH) // dt.timedelta(milliseconds=1)


def test_known_times() -> None:
    assert parse_time_ms("1970-01-01T00:00:00.000Z") == 0
    assert format_time_ms(1_795_341_600_123) == "2026-11-22T10:00:00.123Z"
    assert format_time_ms(-1) == "1969-12-31T23:59:59.999Z"


@pytest.mark.parametrize(
    "text", ["2026-11-22T10:00:00Z", "2026-02-29T00:00:00.000Z", "", "2026-11-22T10:00:00.123z"]
)
def test_parse_refuses_non_contract_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_ms(text)


@given(
    st.integers(MIN_TIME_MS, MAX_TIME_MS),
    st.text(min_size=4, max_size=6) | st.from_regex(r"\.[0-9]{3}Z", fullmatch=True),
)
def test_a_known_second_with_another_tail_is_judged_like_the_regex(ms: int, tail: str) -> None:
    second = format_time_ms(ms)[:19]
    parse_time_ms(second + ".000Z")  # the second is known from now on
    text = second + tail
    assert is_time(text) == (TIME_RE.fullmatch(text) is not None)
    if is_time(text):
        assert parse_time_ms(text) == parse_time_ms(second + ".000Z") + int(text[20:23])
    else:
        with pytest.raises(ValueError):
            parse_time_ms(text)
    assert isinstance(decode(ended(time=text)), dict) == is_time(text)


def test_format_refuses_out_of_range() -> None:
    with pytest.raises(ValueError):
        format_time_ms(MAX_TIME_MS + 1)
    with pytest.raises(TypeError):
        format_time_ms(True)
