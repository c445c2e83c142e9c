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
        moved, at most `limit` per page. Raises InvalidCursor for a cursor it did not issue."""
        ...

    async def movements(
        self, account: str, first_day: date, last_day: date, time_zone: ZoneInfo
    ) -> list[DayMovement]:
        """One DayMovement per local day of `time_zone` from first_day to last_day inclusive,
        days without entries included (opening = closing)."""
        ...

    async def close(self) -> None: ...
