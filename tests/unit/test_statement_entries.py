"""Ledger records as the statement store keeps them: the row of a record, what makes a record
malformed, and what a second record under a known id is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.statements.entries import (
    LedgerRow,
    MalformedEntry,
    Verdict,
    differing_fields,
    judge,
    parse_entry,
    split_repeats,
)
from tests.kit.ledger_docs import LedgerBook, decoded

AT = datetime(2026, 11, 19, 7, 6, 40, 123_000, tzinfo=UTC)
T_MS = round(AT.timestamp() * 1000)


def entry(**changes: Any) -> dict[str, Any]:
    book = LedgerBook()
    book.balances["a1"] = 5_000_000
    doc = decoded(book.move("a1", "call", -600_000, T_MS, call_id="c1"))
    doc.update(changes)
    return doc


def test_a_ledger_entry_becomes_its_row() -> None:
    doc = entry()
    row = parse_entry(orjson.dumps(doc), 3, 41)
    assert row == LedgerRow(
        entry_id=doc["id"],
        account="a1",
        kind="call",
        amount_micros=-600_000,
        balance_after_micros=4_400_000,
        currency="USD",
        occurred_at=AT,
        document=doc,
        partition=3,
        offset=41,
    )


MALFORMED = [
    (None, "no value"),
    (b"", "no value"),
    (b"{", "not JSON"),
    (b"[1]", "not a JSON object"),
    (orjson.dumps(entry(type="call.ended")), "type must be ledger.entry"),
    (orjson.dumps(entry(id="")), "id must be a non-empty string"),
    (orjson.dumps({k: v for k, v in entry().items() if k != "account"}), "account must be"),
    (orjson.dumps(entry(amount_micros="600000")), "amount_micros must be an integer"),
    (orjson.dumps(entry(amount_micros=1.0)), "amount_micros must be an integer"),
    (orjson.dumps(entry(amount_micros=True)), "amount_micros must be an integer"),
    (orjson.dumps(entry(balance_after_micros=2**63)), "beyond 64 bits"),
    (orjson.dumps(entry(time="2026-11-19 07:06:40")), "time is not"),
    (orjson.dumps(entry(time="0000-01-01T00:00:00.000Z")), "time is not"),
    (orjson.dumps(entry(description="a\u0000b")), "NUL"),
]


@pytest.mark.parametrize(("value", "why"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_what_is_no_ledger_entry_is_malformed_with_a_reason(value: bytes | None, why: str) -> None:
    with pytest.raises(MalformedEntry, match=why):
        parse_entry(value, 0, 0)


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    doc = entry(description="\\u0000 is how JSON writes NUL")
    assert parse_entry(orjson.dumps(doc), 0, 0).document == doc


VERDICTS = [
    ("the same document", {}, Verdict.DUPLICATE),
    (
        "another balance after (re-created after Redis forgot)",
        {"balance_after_micros": 1},
        Verdict.RECREATED,
    ),
    ("another amount", {"amount_micros": -600_001}, Verdict.CONFLICT),
    ("another kind", {"kind": "sms_out"}, Verdict.CONFLICT),
    ("another account", {"account": "a2"}, Verdict.CONFLICT),
    ("another time", {"time": "2026-11-19T07:06:40.124Z"}, Verdict.CONFLICT),
    ("a field more", {"reference": "x"}, Verdict.CONFLICT),
]


@pytest.mark.parametrize(("what", "change", "verdict"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_a_record_under_a_known_id(what: str, change: dict[str, Any], verdict: Verdict) -> None:
    stored = entry()
    assert judge(stored, {**stored, **change}) is verdict, what


def test_a_session_expired_entry_may_come_back_with_the_time_it_was_issued_again() -> None:
    stored = entry(kind="session_expired")
    assert judge(stored, {**stored, "time": "2026-11-19T09:00:00.000Z"}) is Verdict.RECREATED
    assert judge(stored, {**stored, "amount_micros": -1}) is Verdict.CONFLICT


def test_the_differing_fields_are_named() -> None:
    stored = entry()
    incoming = {**stored, "amount_micros": 1, "reference": "x"}
    del incoming["call_id"]
    assert differing_fields(stored, incoming) == ["amount_micros", "call_id", "reference"]


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=20))
def test_the_first_record_of_each_id_is_kept_in_order(ids: list[str]) -> None:
    doc = entry()
    rows = [
        LedgerRow(i, "a1", "call", -1, 0, "USD", datetime.now(UTC), doc, 0, n)
        for n, i in enumerate(ids)
    ]
    firsts, repeats = split_repeats(rows)
    assert [r.entry_id for r in firsts] == list(dict.fromkeys(ids))
    assert sorted(r.offset for r in firsts + repeats) == list(range(len(ids)))
    assert all(
        r.offset > min(f.offset for f in firsts if f.entry_id == r.entry_id) for r in repeats
    )


def test_the_statement_core_imports_no_adapter() -> None:
    from pathlib import Path

    from tests.kit.imports import absolute_imports_of

    core = Path(__file__).resolve().parents[2] / "src" / "charger" / "statements"
    adapters = ("psycopg", "psycopg_pool", "charger.postgres", "charger.sink", "aiokafka", "redis")
    offenders = {
        f"{path.name}: {module}"
        for path in core.glob("*.py")
        for module in absolute_imports_of(path)
        if module.startswith(adapters)
    }
    assert offenders == set()
