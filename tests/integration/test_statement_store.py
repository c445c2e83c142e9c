"""Statements and daily movements read back from PostgreSQL equal what was published to
billing.ledger: ids, amounts and balances after, for several ranges and filters, page by
page, across the local days of a non-UTC time zone — on entries built by the project's
document code, and on the ledger the real worker publishes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.metrics import SinkMetrics
from charger.postgres.statements import PostgresStatementReader
from charger.settings import Settings
from charger.sink.loop import LedgerSink
from charger.statements.model import InvalidCursor, Show, StatementEntry
from charger.statements.movements import shown
from tests.kit import records
from tests.kit.harness import Run, Stack, run_start_ms
from tests.kit.ledger_docs import LedgerBook, decoded
from tests.kit.ledger_sink import LedgerTopic, rows
from tests.kit.waits import until
from tests.kit.worker import Worker, stop_worker

KYIV = ZoneInfo("Europe/Kyiv")


@contextlib.asynccontextmanager
async def sink_and_reader(
    stack: Stack, database: str, topic: LedgerTopic
) -> AsyncIterator[PostgresStatementReader]:
    """A ledger sink in this process on `topic`'s group, and a reader of its database."""
    settings = Settings(
        kafka_bootstrap=stack.bootstrap,
        database_url=database,  # type: ignore[arg-type]
        sink_group_id=topic.group_id,
        batch_timeout_ms=20,
    )
    sink = LedgerSink(settings, SinkMetrics())
    await sink.start()
    task = asyncio.create_task(sink.run())
    reader = await PostgresStatementReader.connect(settings)
    try:
        yield reader
    finally:
        await reader.close()
        sink.request_stop()
        await asyncio.wait_for(task, 30)
        await sink.stop()


def local_ms(day: date, hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=KYIV)
    return round(moment.timestamp()) * 1000 + ms


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=KYIV).astimezone(UTC)


def expected(
    docs: list[dict[str, Any]], account: str, start: datetime, end: datetime, show: Show
) -> list[tuple[str, int, int]]:
    """(id, amount, balance after) of the published entries a statement must list, in time
    order (entries of one instant in the order published)."""
    lo, hi = start.timestamp() * 1000, end.timestamp() * 1000
    chosen = [
        (parse_time_ms(d["time"]), n, d)
        for n, d in enumerate(docs)
        if d["account"] == account
        and lo <= parse_time_ms(d["time"]) < hi
        and shown(show, d["amount_micros"])
    ]
    return [
        (d["id"], d["amount_micros"], d["balance_after_micros"])
        for _, _, d in sorted(chosen, key=lambda c: c[:2])
    ]


async def read_all(
    reader: PostgresStatementReader,
    account: str,
    start: datetime,
    end: datetime,
    show: Show,
    limit: int,
) -> list[StatementEntry]:
    """Every page of a statement, following the cursors."""
    out: list[StatementEntry] = []
    cursor = None
    while True:
        page = await reader.statement(account, start, end, show, limit, cursor)
        assert len(page.entries) <= limit
        out += page.entries
        if page.next_cursor is None:
            return out
        assert len(page.entries) == limit
        cursor = page.next_cursor


def movements_expected(
    docs: list[dict[str, Any]], account: str, days: list[date]
) -> list[tuple[date, int, dict[str, int], dict[str, int], int]]:
    """The days worked out from the published entries alone."""
    out = []
    for day in days:
        lo = day_start(day).timestamp() * 1000
        hi = day_start(day + timedelta(days=1)).timestamp() * 1000
        mine = [d for d in docs if d["account"] == account]
        opening = sum(d["amount_micros"] for d in mine if parse_time_ms(d["time"]) < lo)
        debits: dict[str, int] = defaultdict(int)
        credits: dict[str, int] = defaultdict(int)
        for d in mine:
            if lo <= parse_time_ms(d["time"]) < hi:
                if d["amount_micros"] < 0:
                    debits[d["kind"]] -= d["amount_micros"]
                elif d["amount_micros"] > 0:
                    credits[d["kind"]] += d["amount_micros"]
        closing = opening + sum(credits.values()) - sum(debits.values())
        out.append((day, opening, dict(debits), dict(credits), closing))
    return out


async def check_statements(
    reader: PostgresStatementReader, docs: list[dict[str, Any]], account: str, first: date
) -> None:
    days = [first + timedelta(days=n) for n in range(3)]
    ranges = [(day_start(d), day_start(d + timedelta(days=1))) for d in days] + [
        (day_start(days[0]), day_start(days[-1] + timedelta(days=1))),  # all three days
        (day_start(days[1]) + timedelta(hours=6), day_start(days[2]) + timedelta(hours=12)),
        (day_start(days[0]) - timedelta(days=7), day_start(days[0])),  # before: nothing
    ]
    for start, end in ranges:
        for show in Show:
            want = expected(docs, account, start, end, show)
            for limit in (1, 4, 1000):
                got = await read_all(reader, account, start, end, show, limit)
                assert [(e.entry_id, e.amount_micros, e.balance_after_micros) for e in got] == (
                    want
                ), (start, end, show, limit)
                for entry in got:
                    assert entry.document == next(d for d in docs if d["id"] == entry.entry_id)
                    assert entry.occurred_at.tzinfo is not None
                    assert entry.occurred_at == datetime.fromtimestamp(
                        parse_time_ms(entry.document["time"]) / 1000, UTC
                    )
    # Movements over the days and one on either side (no entries there: opening = closing).
    around = [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=1)]
    got_days = await reader.movements(account, around[0], around[-1], KYIV)
    assert [
        (
            m.day,
            m.opening_balance_micros,
            dict(m.debits_by_kind_micros),
            dict(m.credits_by_kind_micros),
            m.closing_balance_micros,
        )
        for m in got_days
    ] == movements_expected(docs, account, around)
    # The days add up to the statement of the same range.
    start, end = day_start(around[0]), day_start(around[-1] + timedelta(days=1))
    for show, sign in ((Show.DEBITS, -1), (Show.CREDITS, 1)):
        listed = await read_all(reader, account, start, end, show, 1000)
        moved = sum(
            sum((m.debits_by_kind_micros if sign < 0 else m.credits_by_kind_micros).values())
            for m in got_days
        )
        assert moved == sign * sum(e.amount_micros for e in listed)


async def test_statements_and_movements_equal_the_published_entries(
    stack: Stack, database: str
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    account, other = f"sa-{uuid.uuid4().hex[:8]}", f"sb-{uuid.uuid4().hex[:8]}"
    # Three local days of Kyiv ending the day before yesterday: never a fixed date.
    today = datetime.fromtimestamp(run_start_ms() / 1000, KYIV).date()
    first = today - timedelta(days=4)
    d0, d1, d2 = first, first + timedelta(days=1), first + timedelta(days=2)
    plan = [
        (account, "topup", 20_000_000, local_ms(d0, 0, 0, 0, 0)),  # the first instant of d0
        (account, "call", -600_000, local_ms(d0, 9, 30)),
        (account, "sms_out", -7_900, local_ms(d0, 9, 30)),  # the same instant: publish order
        (other, "call", -1_000_000, local_ms(d0, 10)),
        (account, "call", 0, local_ms(d0, 12)),  # a free call
        (account, "fee", -2_000_000, local_ms(d0, 23, 59, 59, 999)),  # d0's last instant
        (account, "sms_in", -3_000, local_ms(d1, 0)),  # d1's first instant (22:00 UTC)
        (account, "adjustment", 150_000, local_ms(d1, 1, 15)),
        (account, "ring_through", -20_000, local_ms(d1, 13)),
        (account, "recharge", 50_000_000, local_ms(d1, 21)),
        (account, "adjustment", -75_000, local_ms(d2, 2)),
        (account, "call", -1_800_000, local_ms(d2, 23, 0)),
        (other, "topup", 1_000_000, local_ms(d2, 23, 30)),
    ]
    published = [(acct, book.move(acct, kind, amount, at)) for acct, kind, amount, at in plan]
    docs = [decoded(v) for _, v in published]
    await topic.publish(published)
    async with sink_and_reader(stack, database, topic) as reader:
        await until(lambda: _stored(database, [account, other], len(docs)), "entries stored", 30)
        await check_statements(reader, docs, account, first)
        # The closing balance of the last day is the account's balance.
        last = await reader.movements(account, d2, d2, KYIV)
        assert last[0].closing_balance_micros == book.balances[account]
        # A cursor is bound to its query.
        page = await reader.statement(account, day_start(d0), day_start(d2), Show.ALL, 2, None)
        assert page.next_cursor is not None
        with pytest.raises(InvalidCursor):
            await reader.statement(
                account, day_start(d0), day_start(d2), Show.DEBITS, 2, page.next_cursor
            )
        with pytest.raises(InvalidCursor):
            await reader.statement(account, day_start(d0), day_start(d2), Show.ALL, 2, "nope")
        with pytest.raises(ValueError):
            await reader.statement(account, datetime(2026, 1, 1), day_start(d2), Show.ALL, 2, None)


async def _stored(url: str, accounts: list[str], n: int) -> bool:
    try:
        return len(await rows(url, accounts)) == n
    except Exception:
        return False  # the sink has not created its tables yet


async def test_the_statement_of_the_real_worker_s_ledger(
    run: Run, stack: Stack, database: str
) -> None:
    """Calls, SMS, a top-up, a fee and adjustments over three local days of Kyiv, charged by
    the real worker; the store's statements and days against its ledger topic."""
    topic = await LedgerTopic.at_end(stack.bootstrap)
    account = run.acct("kyiv")
    today = datetime.fromtimestamp(run.t0_ms / 1000, KYIV).date()
    first = today - timedelta(days=4)
    days = [first + timedelta(days=n) for n in range(3)]

    def at(day: date, hour: int, minute: int = 0) -> str:
        return format_time_ms(local_ms(day, hour, minute))

    inputs: list[tuple[str, str, dict[str, Any]]] = [
        records.routed(
            records.account_upserted(
                at(days[0], 0), account, f"up-{account}", time_zone="Europe/Kyiv"
            )
        ),
        records.routed(
            records.balance_credited(
                at(days[0], 0, 5), account, f"cr-{account}", amount_micros=30_000_000
            )
        ),
    ]
    for n, day in enumerate(days):
        call = f"c{n}-{account}"
        inputs += [
            records.routed(records.call_started(at(day, 9), account, f"s{n}", call_id=call)),
            records.routed(
                records.call_ended(
                    at(day, 9, 2), account, f"e{n}", call_id=call, duration_ms=95_000
                )
            ),
            records.routed(records.sms_sent(at(day, 23, 59), account, f"m{n}")),
            records.routed(records.sms_received(at(day, 0, 30), account, f"r{n}")),
        ]
    inputs += [
        records.routed(
            records.fee_charged(
                at(days[1], 12),
                account,
                f"fee-{account}",
                amount_micros=2_500_000,
                item="number_purchase",
                description="a phone number",
            )
        ),
        records.routed(
            records.balance_adjusted(
                at(days[2], 15), account, f"adj-{account}", amount_micros=-125_000, reason="fix"
            )
        ),
    ]
    worker = Worker(run, CHARGER_MAX_CALL_S=str(7 * 24 * 3600))
    try:
        await run.send_all(inputs)
        await run.wait_idle(60)
        ledger = await run.ledger()
    finally:
        assert await asyncio.to_thread(stop_worker, worker.proc) == 0, worker.tail()
    docs = [d for d in ledger if d["account"] == account]
    kinds = {d["kind"] for d in docs}
    assert {"call", "sms_out", "sms_in", "topup", "fee", "adjustment"} <= kinds, kinds
    async with sink_and_reader(stack, database, topic) as reader:
        await until(lambda: _stored(database, [account], len(docs)), "the ledger stored", 30)
        await check_statements(reader, docs, account, first)
        last = await reader.movements(account, days[-1], days[-1], KYIV)
        assert last[0].closing_balance_micros == await run.balance(account)
