"""Ledger records as the statement store keeps them: one row per entry id. Pure.

`parse_entry` turns a `billing.ledger` record into the row the store writes, or says in
one sentence why it cannot (`MalformedEntry`). `judge` decides what a record under an id
the store already holds is:

- `duplicate`: the same document again — the relay republished it after a crash, or the
  sink read it again after one;
- `recreated`: the same economic content with another `balance_after_micros` (or, for a
  `session_expired` entry, another `time`): the worker re-created the entry after Redis
  forgot it, and the account's forgotten records interleaved differently the second time,
  or the ticker closed the session again later (README, "Redis forgets"). The first one
  stays, as for a duplicate;
- `conflict`: anything else differs — another amount, kind, account, currency, cause or
  time under one id. Never stored over the first: reported and kept apart.

Which instant dates an entry (`occurred_at`): the document's `time`. For a movement caused
by a record (a call, an SMS, a top-up, a recharge result, a fee, an adjustment) it is that
record's own time; for a scheduled fee, the period's instant (the last millisecond of the
day charged in arrears, the first of the month charged in advance). Both come from the
inputs, so an entry re-created after Redis forgot it has the same `time`. The Kafka
record's timestamp is when the relay sent it, and a re-created entry is sent again later:
not stable, not used. The one exception is `session_expired` (a call whose end never came),
whose `time` is when the ticker closed the session; re-created, it may be later, and the
store keeps the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from charger.events.timefmt import parse_time_ms

__all__ = [
    "LedgerRow",
    "MalformedEntry",
    "Verdict",
    "differing_fields",
    "economic_content",
    "judge",
    "parse_entry",
    "split_repeats",
]

LEDGER_TYPE = "ledger.entry"
# Fields a re-created entry may carry with other values (see the module's docstring).
BALANCE_FIELD = "balance_after_micros"
ISSUED_KINDS = frozenset({"session_expired"})  # kinds whose `time` is when it was issued
# PostgreSQL's bigint.
INT64 = (-(2**63), 2**63 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Verdict(StrEnum):
    """What the sink did with one record (the `result` label of its metric)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    RECREATED = "recreated"
    CONFLICT = "conflict"
    MALFORMED = "malformed"


class MalformedEntry(ValueError):
    """A record of billing.ledger that is no ledger entry; the message says why."""


@dataclass(frozen=True)
class LedgerRow:
    """One ledger entry as stored: its columns, and where on billing.ledger it was read."""

    entry_id: str
    account: str
    kind: str
    amount_micros: int
    balance_after_micros: int
    currency: str
    occurred_at: datetime
    document: Mapping[str, Any]
    partition: int
    offset: int


def _text(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEntry(f"{name} must be a non-empty string, got {value!r:.80}")
    return value


def _integer(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEntry(f"{name} must be an integer, got {value!r:.80}")
    if not INT64[0] <= value <= INT64[1]:
        raise MalformedEntry(f"{name} is beyond 64 bits: {value}")
    return value


def occurred_at(time: str) -> datetime:
    """The aware UTC datetime of a contract time; MalformedEntry if it is not one."""
    try:
        return EPOCH + timedelta(milliseconds=parse_time_ms(time))
    except (ValueError, OverflowError) as exc:
        raise MalformedEntry(f"time is not an RFC 3339 UTC time: {time!r:.80}") from exc


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def parse_entry(value: bytes | None, partition: int, offset: int) -> LedgerRow:
    """The row of one billing.ledger record; MalformedEntry when it is not a ledger entry."""
    if not value:
        raise MalformedEntry("the record has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedEntry(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedEntry(f"not a JSON object but {type(doc).__name__}")
    # JSON allows a NUL character; PostgreSQL's jsonb and text refuse it, failing the batch.
    if b"\\u0000" in value and _holds_nul(doc):
        raise MalformedEntry("holds a NUL character (\\u0000), which PostgreSQL cannot store")
    if doc.get("type") != LEDGER_TYPE:
        raise MalformedEntry(f"type must be {LEDGER_TYPE}, got {doc.get('type')!r:.80}")
    return LedgerRow(
        entry_id=_text(doc, "id"),
        account=_text(doc, "account"),
        kind=_text(doc, "kind"),
        amount_micros=_integer(doc, "amount_micros"),
        balance_after_micros=_integer(doc, BALANCE_FIELD),
        currency=_text(doc, "currency"),
        occurred_at=occurred_at(_text(doc, "time")),
        document=doc,
        partition=partition,
        offset=offset,
    )


def economic_content(document: Mapping[str, Any]) -> dict[str, Any]:
    """What must be the same in every record under one id: all but what a re-creation may
    change (`balance_after_micros`; `time` of an entry whose time is when it was issued)."""
    kept = {k: v for k, v in document.items() if k != BALANCE_FIELD}
    if document.get("kind") in ISSUED_KINDS:
        kept.pop("time", None)
    return kept


def judge(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> Verdict:
    """What a record under the id of the `stored` document is: duplicate, recreated, conflict."""
    if stored == incoming:
        return Verdict.DUPLICATE
    if economic_content(stored) == economic_content(incoming):
        return Verdict.RECREATED
    return Verdict.CONFLICT


def differing_fields(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> list[str]:
    """The names of the fields whose values differ (missing on one side counts)."""
    return sorted(k for k in stored.keys() | incoming.keys() if stored.get(k) != incoming.get(k))


def split_repeats(rows: Iterable[LedgerRow]) -> tuple[list[LedgerRow], list[LedgerRow]]:
    """The first row of each id, and the later rows under an id seen before (in order)."""
    firsts: dict[str, LedgerRow] = {}
    repeats: list[LedgerRow] = []
    for row in rows:
        if row.entry_id in firsts:
            repeats.append(row)
        else:
            firsts[row.entry_id] = row
    return list(firsts.values()), repeats
