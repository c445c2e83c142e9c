"""Statements for API tests: a `StatementReader` over entries held in memory, and builders.

`MemoryStatements` answers the project's own interface (`charger.statements.reader`) the
way its contract says — entries with start <= occurred_at < end in the order they were
added (the order the balance moved), pages with an opaque cursor bound to its query, one
`DayMovement` per local day — so the API can be tested in-process without PostgreSQL. It
is a fake behind our interface, for unit and in-process tests only; the statement store
itself is tested against a real PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from charger.events.timefmt import format_time_ms
from charger.statements.model import DayMovement, InvalidCursor, Show, StatementEntry, StatementPage
from charger.statements.ranges import day_start


def entry(
    account: str,
    entry_id: str,
    kind: str,
    amount_micros: int,
    balance_after_micros: int,
    occurred_at: datetime,
    currency: str = "USD",
    **extra: Any,
) -> StatementEntry:
    """A stored ledger entry with the document the worker would have published."""
    instant_ms = int(occurred_at.timestamp() * 1000)
    document: dict[str, Any] = {
        "id": entry_id,
        "type": "ledger.entry",
        "account": account,
        "time": format_time_ms(instant_ms),
        "kind": kind,
        "amount_micros": amount_micros,
        "currency": currency,
        "source_event_id": f"e-{entry_id}",
        "source_topic": "telephony.events",
        "quantity": 1,
        "unit": "item",
        "unit_price_micros": abs(amount_micros),
        **extra,
        "balance_after_micros": balance_after_micros,
    }
    return StatementEntry(
        entry_id=entry_id,
        account=account,
        kind=kind,
        amount_micros=amount_micros,
        balance_after_micros=balance_after_micros,
        currency=currency,
        occurred_at=occurred_at,
        document=document,
    )


def ledger(
    account: str, opening_micros: int, moves: Iterable[tuple[datetime, str, int]], prefix: str = ""
) -> list[StatementEntry]:
    """Entries for (time, kind, signed amount) moves in order, balances running on from
    `opening_micros`."""
    balance = opening_micros
    out = []
    for n, (when, kind, amount) in enumerate(moves, 1):
        balance += amount
        out.append(entry(account, f"{prefix}{account}-{n}", kind, amount, balance, when))
    return out


class MemoryStatements:
    """A StatementReader over a list of entries (see the module notes)."""

    def __init__(self, entries: Iterable[StatementEntry] = ()) -> None:
        self.entries: list[StatementEntry] = list(entries)
        self.closed = False
        self.failing: Exception | None = None  # raised by every call while set

    def add(self, entries: Iterable[StatementEntry]) -> None:
        self.entries.extend(entries)

    def _matching(self, account: str, start: datetime, end: datetime, show: Show) -> list[int]:
        return [
            i
            for i, e in enumerate(self.entries)
            if e.account == account
            and start <= e.occurred_at < end
            and (
                show is Show.ALL
                or (show is Show.DEBITS and e.amount_micros < 0)
                or (show is Show.CREDITS and e.amount_micros > 0)
            )
        ]

    @staticmethod
    def _query(account: str, start: datetime, end: datetime, show: Show) -> str:
        text = f"{account}|{start.isoformat()}|{end.isoformat()}|{show.value}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def statement(
        self,
        account: str,
        start: datetime,
        end: datetime,
        show: Show,
        limit: int,
        cursor: str | None,
    ) -> StatementPage:
        if self.failing is not None:
            raise self.failing
        query = self._query(account, start, end, show)
        offset = 0
        if cursor is not None:
            try:
                doc = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
                offset = int(doc["offset"])
                valid = doc["query"] == query and offset >= 0
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise InvalidCursor("not a cursor of this statement")
        positions = self._matching(account, start, end, show)
        chosen = positions[offset : offset + limit]
        more = offset + limit < len(positions)
        next_cursor = None
        if more:
            token = orjson.dumps({"offset": offset + limit, "query": query})
            next_cursor = base64.urlsafe_b64encode(token).decode()
        return StatementPage(tuple(self.entries[i] for i in chosen), next_cursor)

    async def movements(
        self, account: str, first_day: date, last_day: date, time_zone: ZoneInfo
    ) -> list[DayMovement]:
        if self.failing is not None:
            raise self.failing
        mine = [e for e in self.entries if e.account == account]
        days = []
        day = first_day
        while day <= last_day:
            start, end = day_start(day, time_zone), day_start(day + timedelta(days=1), time_zone)
            before = [e for e in mine if e.occurred_at < start]
            within = [e for e in mine if start <= e.occurred_at < end]
            opening = before[-1].balance_after_micros if before else 0
            if within and not before:
                opening = within[0].balance_after_micros - within[0].amount_micros
            debits: dict[str, int] = defaultdict(int)
            credits: dict[str, int] = defaultdict(int)
            for e in within:
                if e.amount_micros < 0:
                    debits[e.kind] += -e.amount_micros
                else:
                    credits[e.kind] += e.amount_micros
            closing = within[-1].balance_after_micros if within else opening
            days.append(DayMovement(day, opening, dict(debits), dict(credits), closing))
            day += timedelta(days=1)
        return days

    async def ping(self) -> None:
        if self.failing is not None:
            raise self.failing

    async def close(self) -> None:
        self.closed = True
