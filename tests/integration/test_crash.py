"""Guarantee 1 across crashes and restarts, on the real broker and Redis.

A worker killed with SIGKILL after moving money but before publishing loses nothing and
publishes nothing twice; a restarted group that is handed the same records again (its
offsets rewound) charges nothing twice, because apply.lua's per-partition watermark
skips what was applied.
"""

from __future__ import annotations

import asyncio
import signal

from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import OffsetAndMetadata

from charger.protocol.outputs import Refused, decode_entry
from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Item, Run
from tests.kit.records import (
    FR_NUMBER,
    UK_NUMBER,
    account_upserted,
    balance_credited,
    call_attempt,
    call_ended,
    call_started,
    routed,
    sms_received,
    sms_sent,
)
from tests.kit.worker import Worker, running

EV = names.TELEPHONY_EVENTS


def workload(run: Run) -> tuple[list[Item], dict[str, int], dict[str, set[str]], list[Item]]:
    """Three accounts' traffic with a duplicate of each kind and one bad record.

    Returns the records, the closing balance and ledger entry ids expected per account, and
    the bad records.
    """
    u = run.uid
    a1, a2, a3 = run.acct("c1"), run.acct("c2"), run.acct("c3")
    sms1 = sms_sent(run, a1, f"sms1-{u}", message_id=f"m1-{u}", segments=2)
    att1 = call_attempt(run, a2, f"att1-{u}", call_id=f"r1-{u}")
    pay2 = balance_credited(run, a3, f"pay2-{u}", amount_micros=250_000)
    bad: list[Item] = [(EV, a1, b"{this is not json")]
    items: list[Item] = [
        *[routed(account_upserted(run, a, f"up-{a}")) for a in (a1, a2, a3)],
        routed(balance_credited(run, a1, f"cr1-{u}", amount_micros=5_000_000)),
        routed(balance_credited(run, a2, f"cr2-{u}", amount_micros=2_000_000)),
        routed(balance_credited(run, a3, f"cr3-{u}", amount_micros=1_000_000)),
        routed(pay2),
        routed(pay2),  # a resent top-up
        # a1: 2 SMS segments (and the same SMS resent), a call to "1", an inbound SMS
        routed(sms1),
        *bad,
        routed(sms1),
        routed(call_started(run, a1, f"s1-{u}", call_id=f"k1-{u}", to="+14155550123")),
        routed(call_ended(run, a1, f"e1-{u}", call_id=f"k1-{u}", duration_ms=90_500)),
        routed(sms_received(run, a1, f"in1-{u}", message_id=f"mi-{u}", caller="+1415")),
        # a2: two ring-through attempts (one resent) and a call to "44"
        routed(att1),
        routed(att1),
        routed(call_attempt(run, a2, f"att2-{u}", call_id=f"r2-{u}")),
        routed(
            call_started(run, a2, f"s2-{u}", call_id=f"k2-{u}", to=UK_NUMBER, caller="+15550002")
        ),
        routed(call_ended(run, a2, f"e2-{u}", call_id=f"k2-{u}", duration_ms=61_200)),
        # a3: an SMS, then a routed end with no start that takes it below zero
        routed(sms_sent(run, a3, f"sms3-{u}", message_id=f"m3-{u}")),
        routed(
            call_ended(
                run,
                a3,
                f"e3-{u}",
                call_id=f"k3-{u}",
                duration_ms=90_000,
                direction="outbound",
                **{"from": "+15550003", "to": FR_NUMBER},
            )
        ),
    ]
    balances = {
        # 5.00 - 2 segments * 0.0079 - 91 s at 0.60/min (1/1) - 1 inbound segment * 0.0025
        a1: 5_000_000 - 15_800 - 910_000 - 2_500,
        # 2.00 - 2 attempts * 0.01 - (66 s at 0.90/min + 0.05 connect) for 61.2 s at 60/6
        a2: 2_000_000 - 20_000 - 1_040_000,
        # 1.00 + 0.25 - 0.0079 - 120 s at 1.20/min for 90 s at 60/60
        a3: 1_000_000 + 250_000 - 7_900 - 2_400_000,
    }
    ids = {
        a1: {f"ac:cr1-{u}:topup", f"ev:sms1-{u}:sms_out", f"ev:e1-{u}:call", f"ev:in1-{u}:sms_in"},
        a2: {
            f"ac:cr2-{u}:topup",
            f"ev:att1-{u}:ring_through",
            f"ev:att2-{u}:ring_through",
            f"ev:e2-{u}:call",
        },
        a3: {f"ac:cr3-{u}:topup", f"ac:pay2-{u}:topup", f"ev:sms3-{u}:sms_out", f"ev:e3-{u}:call"},
    }
    return items, balances, ids, bad


async def outbox(run: Run) -> list[tuple[str, bytes]]:
    """What waits in the outboxes for this run's accounts: (output type, account) each."""
    out = []
    for slot in range(run.keys.slots):
        for _, entry in await run.redis.xrange(run.keys.outbox(slot)):
            for output in decode_entry(entry):
                account = output.key if isinstance(output, Refused) else output.account
                if run.uid.encode() in account:
                    out.append((type(output).__name__, account))
    return out


async def check_published_once(
    run: Run, balances: dict[str, int], ids: dict[str, set[str]], bad: list[Item]
) -> None:
    """Every expected output exactly once, and the ledger adds up to each balance."""
    ledger = await run.ledger()
    assert len({e["id"] for e in ledger}) == len(ledger), "a ledger entry was published twice"
    assert len(ledger) == sum(len(v) for v in ids.values()) == 12
    for acct, closing in balances.items():
        mine = [e for e in ledger if e["account"] == acct]
        assert {e["id"] for e in mine} == ids[acct]
        assert await run.balance(acct) == closing
        assert sum(e["amount_micros"] for e in mine) == closing  # opening balance 0
        assert mine[-1]["balance_after_micros"] == closing
    a3 = run.acct("c3")
    commands = [c.json() for c in await run.outputs(names.TELEPHONY_COMMANDS)]
    assert [
        (c["id"], c["account"], c["available_micros"], c["balance_micros"]) for c in commands
    ] == [(f"ev:e3-{run.uid}:account.suspended", a3, balances[a3], balances[a3])]
    dlq = await run.outputs(names.DLQ)
    assert [(d.value, d.headers[headers_of.ERROR]) for d in dlq] == [
        (value, b"malformed_json") for _, _, value in bad
    ]


async def test_sigkill_after_apply_loses_nothing_and_publishes_everything_once(
    run: Run,
) -> None:
    items, balances, ids, bad = workload(run)
    assert balances == dict(zip(ids, (4_071_700, 940_000, -1_157_900), strict=True))
    await run.send_all(items)  # all there before the worker starts: one first batch

    doomed = Worker(run, failpoint="kill_after_apply")
    code = await doomed.run_to_exit(90)
    assert code == -signal.SIGKILL, doomed.tail()

    # Money moved in Redis, nothing was published or committed: it all waits in the outbox.
    for acct, closing in balances.items():
        assert await run.balance(acct) == closing
    assert await run.ledger() == []
    assert await run.outputs(names.TELEPHONY_COMMANDS) == []
    assert await run.outputs(names.DLQ) == []
    pending = await outbox(run)
    # the ledger entries, the suspension and the DLQ record
    assert len(pending) == 12 + 1 + 1, pending
    assert await run.outbox_backlog() > 0  # entries: one per slot the batch touched
    assert await run.committed_lag() == len(items)

    # A normal worker is handed the same batch again: the watermark skips it, the relay
    # publishes the outbox.
    worker = Worker(run)
    try:
        await run.wait_idle(90)
        code = worker.stop()
    finally:
        worker.kill()
    assert code == 0, worker.tail()
    await check_published_once(run, balances, ids, bad)


async def rewind_group(run: Run, timeout: float = 60.0) -> None:
    """Commit the group's input offsets back to where this run began.

    Done as a member of the group: the embedded broker refuses offset commits from outside
    a group that has had members, so join it, take every partition, commit, and leave.
    """
    marks = {
        tp: OffsetAndMetadata(off, "")
        for tp, off in run.marks.items()
        if tp.topic in names.CO_PARTITIONED
    }
    c = AIOKafkaConsumer(
        bootstrap_servers=run.bootstrap,
        group_id=run.settings.group_id,
        enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=run.settings.session_timeout_ms,
        heartbeat_interval_ms=1_000,
        rebalance_timeout_ms=run.settings.rebalance_timeout_ms,
    )
    c.subscribe(list(names.CO_PARTITIONED))
    await c.start()
    try:
        async with asyncio.timeout(timeout):
            while c.assignment() != set(marks):
                await c.getmany(timeout_ms=200)  # drives the join; records are not used
        await c.commit(marks)
    finally:
        await c.stop()


async def test_redelivery_after_a_restart_is_skipped_by_the_watermark(run: Run) -> None:
    items, balances, ids, bad = workload(run)
    await run.send_all(items)
    async with running(run.settings):
        await run.wait_idle(60)
    await check_published_once(run, balances, ids, bad)

    # Rewind the group to the start of the run, and forget the event ids as if the dedupe
    # window had passed: only the per-partition watermark stands between the redelivered
    # records and a second charge.
    await rewind_group(run)
    assert await run.committed_lag() == len(items)
    seen = [
        k
        async for k in run.redis.scan_iter(match=f"{run.settings.redis_prefix}:*:s:*")
        if run.uid.encode() in k
    ]  # all of this run's event ids carry its uid
    assert len(seen) == len(items) - len(bad) - 3 == 17  # one id per distinct good record
    await run.redis.delete(*seen)

    async with running(run.settings):
        await run.wait_idle(60)
    assert await run.committed_lag() == 0
    assert await run.outbox_backlog() == 0
    await check_published_once(run, balances, ids, bad)
