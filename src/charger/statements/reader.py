"""The one question the API asks of stored statements; the PostgreSQL store answers it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from charger.statements.model import DayMovement, Show, StatementPage


class StatementReader(Protocol):
    async def statement(
        self,
        account: str,
        start: datetime,
        end: datetime,
        show: Show,
        limit: int,
        cursor: str | None,
    ) -> StatementPage:
        """Entries with start <= occurred_at < end (aware datetimes), in the order the balance
        moved, at most `limit` per page. Raises InvalidCursor for a cursor it did not issue.

        The PostgreSQL store orders by occurred_at, then by where the entry was published
        on billing.ledger: the order the balance moved whenever an account's events arrive
        in time order; an entry dated earlier than one already charged (a fee for a day a
        stopped worker missed) is listed at its date, its balance_after_micros the one it
        left when it was charged. Debits: amount < 0; credits: amount > 0."""
        ...

    async def movements(
        self, account: str, first_day: date, last_day: date, time_zone: ZoneInfo
    ) -> list[DayMovement]:
        """One DayMovement per local day of `time_zone` from first_day to last_day inclusive,
        days without entries included (opening = closing). A day's opening balance is the
        sum of every amount dated before it (charger.statements.movements)."""
        ...

    async def ping(self) -> None:
        """Returns once the store answers a trivial query; raises when it does not (the
        API's /ready bounds the wait)."""
        ...

    async def close(self) -> None: ...
