"""Ledger entries: deterministic ids, and the one builder of every entry's JSON.

An entry is planned whole but for the balance it leaves, known only once apply.lua moved
the money: `ledger_head` renders it without that field and `complete` closes it."""

from __future__ import annotations

from typing import Any

import orjson

from charger_topics import names

# Short tags keep ids readable and stop ids of different producers from colliding.
SOURCE_TAGS = {
    names.TELEPHONY_EVENTS: "ev",
    names.BILLING_ACCOUNTS: "ac",
    names.RECHARGE_RESULTS: "rr",
}


def entry_id(source_tag: str, event_id: str, kind: str) -> str:
    """Deterministic ledger id: the same cause always yields the same id."""
    return f"{source_tag}:{event_id}:{kind}"


def ledger_head(
    *,
    entry: str,
    account: str,
    time: str,
    kind: str,
    amount_micros: int,
    currency: str,
    source_event_id: str,
    source_topic: str,
    quantity: int,
    unit: str,
    unit_price_micros: int,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A ledger entry without its closing brace; the script appends balance_after_micros."""
    doc: dict[str, Any] = {
        "id": entry,
        "type": "ledger.entry",
        "account": account,
        "time": time,
        "kind": kind,
        "amount_micros": amount_micros,
        "currency": currency,
        "source_event_id": source_event_id,
        "source_topic": source_topic,
        "quantity": quantity,
        "unit": unit,
        "unit_price_micros": unit_price_micros,
    }
    if extra:
        doc.update(extra)
    return orjson.dumps(doc)[:-1]


def complete(head: bytes, balance_after_micros: int) -> bytes:
    """The full ledger JSON from the head and the balance the script recorded."""
    return b'%s,"balance_after_micros":%d}' % (head, balance_after_micros)
