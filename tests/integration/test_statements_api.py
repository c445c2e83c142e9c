"""What a customer reads through `charger api` equals what the worker published: calls,
SMS, a top-up, an auto-recharge, a fee and an adjustment over three local days of Kyiv,
charged by the real worker, stored by the ledger sink, read over HTTP — each day and the
three together, all / debits / credits, page by page and as CSV, and the daily movement
of funds adding up to the statement."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from charger.events.timefmt import format_time_ms, parse_time_ms
from tests.kit import records
from tests.kit.api import api_process, bearer
from tests.kit.harness import Run, Stack
from tests.kit.ledger_sink import LedgerTopic, SinkProcess, rows, sink_env
from tests.kit.outputs import recharge_requests
from tests.kit.waits import until
from tests.kit.worker import Worker, stop_worker

KYIV = ZoneInfo("Europe/Kyiv")
SIGN = {"all": 0, "debits": -1, "credits": 1}


def local(day: date, hour: int, minute: int = 0) -> str:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=KYIV)
    return format_time_ms(round(moment.timestamp()) * 1000)


def published(docs: list[dict[str, Any]], first: date, last: date, show: str) -> list[tuple]:
    """(id, amount, balance after) of the entries dated in those local days, in time order."""
    lo = datetime(first.year, first.month, first.day, tzinfo=KYIV).timestamp() * 1000
    end = last + timedelta(days=1)
    hi = datetime(end.year, end.month, end.day, tzinfo=KYIV).timestamp() * 1000
    chosen = [
        (parse_time_ms(d["time"]), n, d)
        for n, d in enumerate(docs)
        if lo <= parse_time_ms(d["time"]) < hi
        and (SIGN[show] == 0 or d["amount_micros"] * SIGN[show] > 0)
    ]
    return [
        (d["id"], d["amount_micros"], d["balance_after_micros"])
        for _, _, d in sorted(chosen, key=lambda c: c[:2])
    ]


async def statement(
    client: httpx.AsyncClient, account: str, first: date, last: date, show: str
) -> list[dict[str, Any]]:
    """Every page, three entries at a time, following the cursors."""
    query = {"from": first.isoformat(), "to": last.isoformat(), "show": show, "limit": 3}
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            f"/v1/accounts/{account}/statement",
            params=query if cursor is None else {**query, "cursor": cursor},
        )
        assert page.status_code == 200, page.text
        body = page.json()
        out += body["entries"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_statements_over_http_equal_the_published_ledger(
    run: Run, stack: Stack, database: str, tmp_path: Path
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    account = run.acct("kyiv")
    today = datetime.fromtimestamp(run.t0_ms / 1000, KYIV).date()
    days = [today - timedelta(days=4) + timedelta(days=n) for n in range(3)]
    auto = {"enabled": True, "threshold_micros": 29_900_000, "amount_micros": 60_000_000}
    opening = [
        records.account_upserted(
            local(days[0], 0), account, f"up-{account}", time_zone="Europe/Kyiv", auto_recharge=auto
        ),
        records.balance_credited(
            local(days[0], 0, 5), account, f"cr-{account}", amount_micros=30_000_000
        ),
    ]
    traffic: list[dict[str, Any]] = []
    for n, day in enumerate(days):
        call = f"c{n}-{account}"
        traffic += [
            records.call_started(local(day, 9), account, f"s{n}", call_id=call),
            records.call_ended(
                local(day, 9, 2), account, f"e{n}", call_id=call, duration_ms=95_000
            ),
            records.sms_sent(local(day, 23, 59), account, f"m{n}"),
            records.sms_received(local(day, 0, 30), account, f"r{n}"),
        ]
    later = [
        records.fee_charged(
            local(days[1], 12),
            account,
            f"fee-{account}",
            amount_micros=2_500_000,
            item="number_purchase",
            description="a phone number",
        ),
        records.balance_adjusted(
            local(days[2], 15), account, f"adj-{account}", amount_micros=-125_000, reason="fix"
        ),
    ]
    sink = SinkProcess(sink_env(stack.bootstrap, database, topic.group_id))
    try:
        worker = Worker(run, CHARGER_MAX_CALL_S=str(7 * 24 * 3600))
        try:
            await run.send_all([records.routed(r) for r in opening + traffic[:4]])
            await run.wait_idle(60)
            (request,) = await recharge_requests(run)  # the first call crossed the threshold
            paid = records.recharge_result(
                local(days[1], 10),
                account,
                f"ok-{account}",
                request_id=request["request_id"],
                amount_micros=60_000_000,
            )
            await run.send_all([records.routed(r) for r in [paid, *traffic[4:], *later]])
            await run.wait_idle(60)
            docs = [d for d in await run.ledger() if d["account"] == account]
            balance = await run.balance(account)
        finally:
            assert await asyncio.to_thread(stop_worker, worker.proc) == 0, worker.tail()
        kinds = {d["kind"] for d in docs}
        assert {"call", "sms_out", "sms_in", "topup", "recharge", "fee", "adjustment"} <= kinds

        async def stored() -> bool:
            try:
                return len(await rows(database, [account])) == len(docs)
            except Exception:
                return False  # the sink has not created its tables yet

        await until(stored, "the sink stored the account's ledger", 60)
        async with (
            api_process(
                run.redis_url, run.settings.redis_prefix, tmp_path, CHARGER_DATABASE_URL=database
            ) as api,
            httpx.AsyncClient(base_url=api.url, headers=bearer()) as client,
        ):
            for first, last in [(d, d) for d in days] + [(days[0], days[-1])]:
                for show in SIGN:
                    got = await statement(client, account, first, last, show)
                    assert [
                        (e["id"], e["amount_micros"], e["balance_after_micros"]) for e in got
                    ] == published(docs, first, last, show), (first, last, show)
                    exported = await client.get(
                        f"/v1/accounts/{account}/statement",
                        params={"from": first.isoformat(), "to": last.isoformat(), "show": show},
                        headers={"Accept": "text/csv"},
                    )
                    assert exported.headers["content-type"].startswith("text/csv")
                    lines = list(csv.DictReader(io.StringIO(exported.text, newline="")))
                    assert [
                        (row["id"], int(row["amount_micros"]), int(row["balance_after_micros"]))
                        for row in lines
                    ] == [(e["id"], e["amount_micros"], e["balance_after_micros"]) for e in got]
            moved = await client.get(
                f"/v1/accounts/{account}/movements",
                params={"from": days[0].isoformat(), "to": days[-1].isoformat()},
            )
            assert moved.status_code == 200, moved.text
            movements = moved.json()["days"]
            whole = await statement(client, account, days[0], days[-1], "all")
    finally:
        sink.stop()  # also when the worker's part fails: no sink outlives the test
    assert [m["date"] for m in movements] == [d.isoformat() for d in days]
    for day, previous in zip(movements[1:], movements, strict=False):
        assert day["opening_balance_micros"] == previous["closing_balance_micros"]
    for m, day in zip(movements, days, strict=True):
        listed = published(docs, day, day, "all")
        debits, credits = m["debits_by_kind_micros"], m["credits_by_kind_micros"]
        assert sum(credits.values()) - sum(debits.values()) == sum(a for _, a, _ in listed)
        net = m["closing_balance_micros"] - m["opening_balance_micros"]
        assert net == sum(credits.values()) - sum(debits.values())
    assert movements[0]["opening_balance_micros"] == 0
    assert movements[-1]["closing_balance_micros"] == balance
    assert sum(e["amount_micros"] for e in whole) == balance
