"""Ledger entries built by the project's own document code, for the statement store's tests.

`LedgerBook` keeps each account's balance and renders every movement as the worker does
(`charging.ledger.ledger_head`, then `complete` with the balance it left), so the sink and
the statements are tested on the real documents, without running the worker.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from charger.charging import ledger
from charger.events.timefmt import format_time_ms
from charger_topics import names

# (kind, source topic, unit) of the movements a ledger holds.
KINDS: dict[str, tuple[str, str]] = {
    "call": (names.TELEPHONY_EVENTS, "second"),
    "sms_out": (names.TELEPHONY_EVENTS, "segment"),
    "sms_in": (names.TELEPHONY_EVENTS, "segment"),
    "ring_through": (names.TELEPHONY_EVENTS, "attempt"),
    "topup": (names.BILLING_ACCOUNTS, "payment"),
    "recharge": (names.RECHARGE_RESULTS, "payment"),
    "fee": (names.BILLING_ACCOUNTS, "item"),
    "adjustment": (names.BILLING_ACCOUNTS, "adjustment"),
}


@dataclass
class LedgerBook:
    """Balances by account, and every entry rendered in the order it was made."""

    currency: str = "USD"
    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: list[bytes] = field(default_factory=list)
    count: int = 0

    def move(self, account: str, kind: str, amount_micros: int, at_ms: int, **extra: Any) -> bytes:
        """The ledger entry of one movement of `account`'s balance at `at_ms` (epoch ms)."""
        topic, unit = KINDS[kind]
        self.count += 1
        event_id = f"e{self.count}-{account}"
        head = ledger.ledger_head(
            entry=ledger.entry_id(ledger.SOURCE_TAGS.get(topic, "ev"), event_id, kind),
            account=account,
            time=format_time_ms(at_ms),
            kind=kind,
            amount_micros=amount_micros,
            currency=self.currency,
            source_event_id=event_id,
            source_topic=topic,
            quantity=1,
            unit=unit,
            unit_price_micros=abs(amount_micros),
            extra=extra or None,
        )
        self.balances[account] += amount_micros
        entry = ledger.complete(head, self.balances[account])
        self.entries.append(entry)
        return entry


def decoded(entry: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(entry)
    return doc
