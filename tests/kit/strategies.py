"""Hypothesis strategies for records: valid ones from the contract, and JSON-ish junk."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from charger.events import format_time_ms
from charger.events.timefmt import MAX_TIME_MS, MIN_TIME_MS
from charger_topics.records import COMMON, Field, RecordType
from charger_topics.schema import TIME_PATTERN

INT64 = (-(2**63), 2**63 - 1)
times = st.one_of(
    st.integers(MIN_TIME_MS, MAX_TIME_MS).map(format_time_ms),
    st.from_regex(TIME_PATTERN, fullmatch=True),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(*INT64), st.text(max_size=8), st.floats(-1e9, 1e9)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def valid_value(f: Field) -> st.SearchStrategy[Any]:
    if f.kind == "string":
        return st.text(min_size=1, max_size=f.max_length)
    if f.kind == "time":
        return times
    if f.kind == "integer":
        lo = INT64[0] if f.minimum is None else f.minimum
        hi = INT64[1] if f.maximum is None else f.maximum
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))
    if f.kind == "boolean":
        return st.booleans()
    if f.kind == "enum":
        return st.sampled_from(f.values)
    if not f.fields:
        return st.dictionaries(st.text(max_size=5), json_values, max_size=3)
    return st.fixed_dictionaries(
        {k: valid_value(v) for k, v in f.fields.items() if k not in f.optional},
        optional={k: valid_value(v) for k, v in f.fields.items() if k in f.optional},
    )


def record_fields(rt: RecordType) -> tuple[dict[str, Field], set[str]]:
    fields = dict(COMMON) | rt.required | rt.optional
    optional = set(rt.optional) | (set() if rt.keyed_by_account else {"account"})
    return fields, optional


def valid_record(rt: RecordType) -> st.SearchStrategy[dict[str, Any]]:
    fields, optional = record_fields(rt)
    strategies = {k: valid_value(f) for k, f in fields.items()}
    strategies["type"] = st.just(rt.type)
    return st.fixed_dictionaries(
        {k: s for k, s in strategies.items() if k not in optional},
        optional={k: s for k, s in strategies.items() if k in optional},
    )


# JSON-ish values a producer could get wrong: integers past 64 bits, floats where money goes,
# any unicode (escaped lone surrogates included), deep-ish nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", "💸", "0.60", "1e6"]),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
