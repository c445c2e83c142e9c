"""Redis may forget: a worker whose Redis went back to an earlier state applies again what
Redis lost, from its watermarks, and every event is charged exactly once.

The loss is made as a failover to a replica that was behind would make it: a consistent
copy of the run's keys is taken while the worker runs, more traffic is charged and
committed, and Redis goes back to the copy. Calls are open across it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from charger_tools.redis_state import forget_since, remember
from tests.kit.harness import Run
from tests.kit.records import call_ended, call_started, sms_sent
from tests.kit.waits import until
from tests.kit.worker import running
from topics import names

EV = names.TELEPHONY_EVENTS
CREDIT = 100_000_000


def by_id(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        grouped[entry["id"]].append(entry)
    return grouped


async def texts(run: Run, accounts: list[str], wave: str, count: int) -> None:
    for n in range(count):
        for account in accounts:
            await run.send(EV, account, sms_sent(run, account, f"{wave}-{account}-{n}"))


@pytest.mark.parametrize(
    ("batch_max_records", "forgotten", "idle"),
    [
        (5000, "the last batch", False),
        (7, "several batches", False),
        (5000, "while no traffic comes", True),
    ],
)
async def test_what_redis_forgot_is_applied_again_once(
    run: Run, batch_max_records: int, forgotten: str, idle: bool
) -> None:
    accounts = [run.acct("a"), run.acct("b")]
    settings = run.settings_with(batch_max_records=batch_max_records, watermark_check_s=0.2)
    async with running(settings) as rt:
        for account in accounts:
            await run.account(account, credit=CREDIT)
        await run.wait_idle(60)  # known before their traffic, which is on another topic
        for account in accounts:
            await run.send(EV, account, call_started(run, account, f"s-{account}", call_id="c1"))
        await texts(run, accounts, "before", 40)
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)

        await texts(run, accounts, "lost", 40)  # charged, committed, published ...
        await run.wait_idle(60)
        balances = [await run.balance(account) for account in accounts]
        await forget_since(run.redis, state)  # ... and forgotten by Redis
        if idle:  # found by the worker's own check, not by the next batch

            async def restored() -> bool:
                return [await run.balance(account) for account in accounts] == balances

            await until(restored, "the forgotten texts charged again without new traffic")

        for account in accounts:
            end = call_ended(run, account, f"e-{account}", call_id="c1", duration_ms=65_000)
            await run.send(EV, account, end)
        await texts(run, accounts, "after", 40)

        events = 1 + 40 * 3 + 1  # per account: the credit, 120 texts, the call
        ids: dict[str, list[dict[str, Any]]] = {}

        async def charged_once() -> bool:
            nonlocal ids
            if await run.committed_lag() or await run.outbox_backlog():
                return False
            ids = by_id(await run.ledger())
            return len(ids) == events * len(accounts)

        await until(charged_once, f"every event charged after Redis forgot {forgotten}", 90)
        forgotten_total = rt.metrics.registry.get_sample_value(
            "charger_redis_forgotten_records_total"
        )
        assert forgotten_total is not None and forgotten_total >= 80

    for copies in ids.values():
        # Published twice (before the loss and again after it) with the same content.
        assert len({(c["amount_micros"], c["balance_after_micros"]) for c in copies}) == 1, copies
    for account in accounts:
        mine = [copies[0] for copies in ids.values() if copies[0]["account"] == account]
        assert len(mine) == events
        assert sum(entry["amount_micros"] for entry in mine) == await run.balance(account)
        kinds = sorted(entry["kind"] for entry in mine)
        assert kinds.count("sms_out") == 120 and kinds.count("call") == 1
    again = sum(len(copies) > 1 for copies in ids.values())
    assert again >= 80  # the forgotten wave's entries were re-created, not new ones
