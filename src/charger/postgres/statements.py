"""The read side of the statement store: `PostgresStatementReader` answers the API's
`charger.statements.reader.StatementReader` from the rows `charger ledger-sink` writes.

- `statement`: an account's entries with start <= occurred_at < end, in the order
  (occurred_at, ledger partition, ledger offset) — time order, and entries of one instant
  in the order the worker moved the money — a page at a time behind an opaque cursor
  (`statements.cursor`), filtered to debits or credits by the sign rule of
  `statements.movements.shown`.
- `movements`: the local days of a time zone. Python fixes the days' first instants
  (`statements.movements.day_starts`, the zone rules of the subscriptions); PostgreSQL
  sums each day's debits and credits per kind between them (`width_bucket`) and the
  balance before the first day, in one statement, so they come from one snapshot.

Connections come from a pool (`CHARGER_DATABASE_POOL_SIZE` at most), each in autocommit:
a read holds no transaction open between requests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from charger.postgres.connect import connection_options
from charger.postgres.migrate import SchemaError, migrations, schema_version
from charger.settings import Settings
from charger.statements.cursor import Position, StatementQuery, decode_cursor, encode_cursor
from charger.statements.model import DayMovement, Show, StatementEntry, StatementPage
from charger.statements.movements import DaySum, assemble, day_starts

__all__ = ["PostgresStatementReader"]

_COLUMNS = sql.SQL(
    "SELECT entry_id, account, kind, amount_micros, balance_after_micros, currency, "
    "occurred_at, document, ledger_partition, ledger_offset FROM ledger_entries"
)
_WHERE = sql.SQL(" WHERE account = %s AND occurred_at >= %s AND occurred_at < %s")
_ORDER = sql.SQL(" ORDER BY occurred_at, ledger_partition, ledger_offset LIMIT %s")
_FILTERS = {
    Show.ALL: sql.SQL(""),
    Show.DEBITS: sql.SQL(" AND amount_micros < 0"),
    Show.CREDITS: sql.SQL(" AND amount_micros > 0"),
}
_AFTER = sql.SQL(" AND (occurred_at, ledger_partition, ledger_offset) > (%s, %s, %s)")

# The balance before the first day (bucket 0), then each day's sums per kind and direction
# (bucket i: the i-th day); zero amounts move nothing.
_MOVEMENTS = sql.SQL(
    "SELECT 0, '', coalesce(sum(amount_micros), 0) FROM ledger_entries"
    " WHERE account = %(account)s AND occurred_at < %(start)s"
    " UNION ALL"
    " SELECT width_bucket(occurred_at, %(starts)s::timestamptz[]), kind, sum(amount_micros)"
    " FROM ledger_entries"
    " WHERE account = %(account)s AND occurred_at >= %(start)s AND occurred_at < %(end)s"
    " AND amount_micros <> 0"
    " GROUP BY 1, 2, sign(amount_micros)"
)


def _aware(name: str, instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return instant


def _entry(row: tuple[Any, ...]) -> StatementEntry:
    entry_id, account, kind, amount, balance_after, currency, at, document = row[:8]
    return StatementEntry(
        entry_id=entry_id,
        account=account,
        kind=kind,
        amount_micros=int(amount),
        balance_after_micros=int(balance_after),
        currency=currency,
        occurred_at=at.astimezone(UTC),
        document=document,
    )


class PostgresStatementReader:
    """Statements and daily movements from PostgreSQL (`StatementReader`)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, settings: Settings) -> PostgresStatementReader:
        """A reader with its pool open, on a database the sink has migrated.

        Raises psycopg's OperationalError when the database cannot be reached within
        `CHARGER_DATABASE_TIMEOUT_MS`, and SchemaError when its schema is older than this
        build (`charger ledger-sink --migrate-only` brings it up to date)."""
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database_dsn(),
            kwargs={"autocommit": True, **connection_options(settings, "statements")},
            min_size=1,
            max_size=settings.database_pool_size,
            timeout=settings.database_timeout_ms / 1000,
            name="statements",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=settings.database_timeout_ms / 1000)
            async with pool.connection() as conn:
                have, need = await schema_version(conn), len(migrations())
            if have < need:
                raise SchemaError(
                    f"the database's schema is at version {have}, this build reads {need}: "
                    "run charger ledger-sink --migrate-only"
                )
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        """`SELECT 1` on a pooled connection: raises when PostgreSQL does not answer (a
        dead pooled connection fails at once; with none left the pool waits for a new one,
        which the caller's timeout cuts short)."""
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    async def statement(
        self,
        account: str,
        start: datetime,
        end: datetime,
        show: Show,
        limit: int,
        cursor: str | None,
    ) -> StatementPage:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = StatementQuery(account, _aware("start", start), _aware("end", end), Show(show))
        after = decode_cursor(query, cursor) if cursor is not None else None
        parts = [_COLUMNS, _WHERE, _FILTERS[query.show]]
        params: list[Any] = [account, start, end]
        if after is not None:
            parts.append(_AFTER)
            params += [after.occurred_at, after.partition, after.offset]
        parts.append(_ORDER)
        params.append(limit + 1)  # one more: is there a next page?
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql.Composed(parts), params)
            rows = await cur.fetchall()
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(query, Position(last[6], int(last[8]), int(last[9])))
        return StatementPage(tuple(_entry(row) for row in page), next_cursor)

    async def movements(
        self, account: str, first_day: date, last_day: date, time_zone: ZoneInfo
    ) -> list[DayMovement]:
        starts = day_starts(first_day, last_day, time_zone)
        params = {"account": account, "start": starts[0], "end": starts[-1], "starts": starts}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_MOVEMENTS, params)
            rows = await cur.fetchall()
        opening = 0
        sums = []
        for bucket, kind, total in rows:
            if bucket == 0:
                opening = int(total)
            else:
                sums.append(DaySum(int(bucket) - 1, kind, int(total)))
        return assemble(first_day, last_day, opening, sums)
