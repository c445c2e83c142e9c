"""The write side of the statement store: one batch of billing.ledger in one transaction.

`store_batch` parses the records (`statements.entries`), inserts the first record of each
new id (`ON CONFLICT DO NOTHING`: a stored entry is never overwritten, and two sinks that
meet on one id during a rebalance store it once), judges every other record against the
entry stored under its id, and records conflicts and malformed records in
`ledger_refused` — once per record, however often it is read again. The caller commits
the transaction, then the offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.types.json import Jsonb

from charger.statements.entries import (
    LedgerRow,
    MalformedEntry,
    Verdict,
    differing_fields,
    judge,
    parse_entry,
    split_repeats,
)

__all__ = ["BatchReport", "LedgerRecord", "Refusal", "store_batch"]


class LedgerRecord(NamedTuple):
    """One record of billing.ledger as fetched."""

    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class Refusal:
    """A record the store did not take, reported for the first time."""

    reason: Verdict  # CONFLICT or MALFORMED
    partition: int
    offset: int
    detail: str
    entry_id: str | None = None
    account: str | None = None


@dataclass
class BatchReport:
    results: Counter[Verdict] = field(default_factory=Counter)
    refused: list[Refusal] = field(default_factory=list)  # new ones only
    recreated: list[str] = field(default_factory=list)  # entry ids


# The columns travel as arrays in binary (%b) — the text form of an array escapes every
# quote of every document on the client, which cost more than the rest of the batch — and
# the documents as JSON text that the server turns into jsonb.
_INSERT = """
INSERT INTO ledger_entries (entry_id, account, kind, amount_micros, balance_after_micros,
    currency, occurred_at, document, ledger_partition, ledger_offset)
SELECT entry_id, account, kind, amount_micros, balance_after_micros, currency, occurred_at,
    document::jsonb, ledger_partition, ledger_offset
FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[],
    %b::timestamptz[], %b::text[], %b::integer[], %b::bigint[])
    AS batch(entry_id, account, kind, amount_micros, balance_after_micros, currency,
        occurred_at, document, ledger_partition, ledger_offset)
ON CONFLICT (entry_id) DO NOTHING
RETURNING entry_id
"""

_STORED = "SELECT entry_id, document FROM ledger_entries WHERE entry_id = ANY(%s::text[])"

_REFUSE = """
INSERT INTO ledger_refused (reason, entry_id, ledger_partition, ledger_offset, detail,
    document, raw)
SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], %s::bigint[], %s::text[],
    %s::jsonb[], %s::bytea[])
ON CONFLICT (ledger_partition, ledger_offset) DO NOTHING
RETURNING ledger_partition, ledger_offset
"""


async def _insert(cur: psycopg.AsyncCursor[Any], rows: Sequence[LedgerRow]) -> set[str]:
    """Insert `rows` whose ids are new; the ids inserted."""
    if not rows:
        return set()
    # In id order: two transactions inserting overlapping ids wait for each other in the
    # same order, never in a cycle.
    ordered = sorted(rows, key=lambda r: r.entry_id)
    await cur.execute(
        _INSERT,
        (
            [r.entry_id for r in ordered],
            [r.account for r in ordered],
            [r.kind for r in ordered],
            [r.amount_micros for r in ordered],
            [r.balance_after_micros for r in ordered],
            [r.currency for r in ordered],
            [r.occurred_at for r in ordered],
            [orjson.dumps(r.document).decode() for r in ordered],
            [r.partition for r in ordered],
            [r.offset for r in ordered],
        ),
    )
    return {str(entry_id) for (entry_id,) in await cur.fetchall()}


async def _stored_documents(
    cur: psycopg.AsyncCursor[Any], ids: set[str]
) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    await cur.execute(_STORED, (sorted(ids),))
    return {str(entry_id): document for entry_id, document in await cur.fetchall()}


async def _refuse(
    cur: psycopg.AsyncCursor[Any],
    refusals: list[tuple[Refusal, dict[str, Any] | None, bytes | None]],
) -> list[Refusal]:
    """Record refusals; those not recorded before (by partition and offset)."""
    if not refusals:
        return []
    await cur.execute(
        _REFUSE,
        (
            [str(r.reason) for r, _, _ in refusals],
            [r.entry_id for r, _, _ in refusals],
            [r.partition for r, _, _ in refusals],
            [r.offset for r, _, _ in refusals],
            [r.detail for r, _, _ in refusals],
            [None if doc is None else Jsonb(doc) for _, doc, _ in refusals],
            [raw for _, _, raw in refusals],
        ),
    )
    new = {(int(p), int(o)) for p, o in await cur.fetchall()}
    return [r for r, _, _ in refusals if (r.partition, r.offset) in new]


async def store_batch(
    conn: psycopg.AsyncConnection[Any], records: Sequence[LedgerRecord]
) -> BatchReport:
    """Store one batch inside the caller's transaction; what happened to each record."""
    report = BatchReport()
    rows: list[LedgerRow] = []
    refusals: list[tuple[Refusal, dict[str, Any] | None, bytes | None]] = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            rows.append(parse_entry(record.value, record.partition, record.offset))
        except MalformedEntry as exc:
            report.results[Verdict.MALFORMED] += 1
            refusal = Refusal(Verdict.MALFORMED, record.partition, record.offset, str(exc))
            refusals.append((refusal, None, record.value or b""))
    firsts, repeats = split_repeats(rows)
    async with conn.cursor() as cur:
        inserted = await _insert(cur, firsts)
        report.results[Verdict.STORED] += len(inserted)
        known = [r for r in firsts if r.entry_id not in inserted] + repeats
        stored = await _stored_documents(cur, {r.entry_id for r in known})
        for row in known:
            verdict = judge(stored[row.entry_id], row.document)
            report.results[verdict] += 1
            if verdict is Verdict.RECREATED:
                report.recreated.append(row.entry_id)
            elif verdict is Verdict.CONFLICT:
                fields = ", ".join(differing_fields(stored[row.entry_id], row.document))
                refusal = Refusal(
                    Verdict.CONFLICT,
                    row.partition,
                    row.offset,
                    f"another payload under a stored id; differs in: {fields}",
                    row.entry_id,
                    row.account,
                )
                refusals.append((refusal, dict(row.document), None))
        report.refused = await _refuse(cur, refusals)
    return report
