"""Guarantee 1 across crashes and restarts, on the real broker and Redis.

A worker killed with SIGKILL after moving money but before publishing loses nothing and
publishes nothing twice; a restarted group that is handed the same records again (its
offsets rewound) charges nothing twice, because apply.lua's per-partition watermark
skips what was applied.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import OffsetAndMetadata

from charger.kafka.relay import unpack_entry
from charger.runtime import Runtime
from charger_tools.embedded import free_port
from tests.integration.harness import Run, spawn_worker, stop_worker
from topics import names

EV = names.TELEPHONY_EVENTS
AC = names.BILLING_ACCOUNTS

Item = tuple[str, str, dict[str, Any] | bytes]


class Worker:
    """A spawned `charger worker` whose output is drained (a full pipe would stall it)."""

    def __init__(self, run: Run, failpoint: str = "", **env: str) -> None:
        self.web_port = free_port()
        self.proc = spawn_worker(run, self.web_port, failpoint, **env)
        self.err = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.err += line

    def tail(self) -> str:
        return self.err[-3000:].decode(errors="replace")

    async def wait(self, timeout: float) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after {timeout}s:\n{self.tail()}")

    async def started(self, timeout: float = 60.0) -> None:
        """Until the whole worker (charging path, then Faust's app and web) says Ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while b"]: Ready" not in self.err:
            if self.proc.poll() is not None or loop.time() > deadline:
                pytest.fail(f"worker not ready after {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def stop(self) -> int:
        code = stop_worker(self.proc)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


def upsert(run: Run, acct: str) -> dict[str, Any]:
    return run.event(
        "account.upserted",
        acct,
        f"up-{acct}",
        currency="USD",
        rate_plan="std-usd",
        credit_limit_micros=0,
    )


def credit(run: Run, acct: str, eid: str, amount: int) -> dict[str, Any]:
    return run.event("balance.credited", acct, eid, amount_micros=amount, reference=eid)


def workload(run: Run) -> tuple[list[Item], dict[str, int], dict[str, set[str]], list[Item]]:
    """Three accounts' traffic with a duplicate of each kind and one bad record.

    Returns the records, the closing balance and ledger entry ids expected per account, and
    the bad records.
    """
    u = run.uid
    a1, a2, a3 = run.acct("c1"), run.acct("c2"), run.acct("c3")
    sms1 = run.event(
        "sms.sent", a1, f"sms1-{u}", message_id=f"m1-{u}", to="+14155550100", segments=2
    )
    att1 = run.event("call.attempt", a2, f"att1-{u}", call_id=f"r1-{u}", to="+14155550100")
    pay2 = credit(run, a3, f"pay2-{u}", 250_000)
    bad: list[Item] = [(EV, a1, b"{this is not json")]
    items: list[Item] = [
        (AC, a1, upsert(run, a1)),
        (AC, a2, upsert(run, a2)),
        (AC, a3, upsert(run, a3)),
        (AC, a1, credit(run, a1, f"cr1-{u}", 5_000_000)),
        (AC, a2, credit(run, a2, f"cr2-{u}", 2_000_000)),
        (AC, a3, credit(run, a3, f"cr3-{u}", 1_000_000)),
        (AC, a3, pay2),
        (AC, a3, pay2),  # a resent top-up
        # a1: 2 SMS segments (and the same SMS resent), a call to "1", an inbound SMS
        (EV, a1, sms1),
        *bad,
        (EV, a1, sms1),
        (
            EV,
            a1,
            run.event(
                "call.started",
                a1,
                f"s1-{u}",
                call_id=f"k1-{u}",
                direction="outbound",
                **{"from": "+15550001", "to": "+14155550123"},
            ),
        ),
        (
            EV,
            a1,
            run.event(
                "call.ended", a1, f"e1-{u}", run.at(90.5), call_id=f"k1-{u}", duration_ms=90_500
            ),
        ),
        (
            EV,
            a1,
            run.event("sms.received", a1, f"in1-{u}", message_id=f"mi-{u}", **{"from": "+1415"}),
        ),
        # a2: two ring-through attempts (one resent) and a call to "44"
        (EV, a2, att1),
        (EV, a2, att1),
        (EV, a2, run.event("call.attempt", a2, f"att2-{u}", call_id=f"r2-{u}", to="+14155550100")),
        (
            EV,
            a2,
            run.event(
                "call.started",
                a2,
                f"s2-{u}",
                call_id=f"k2-{u}",
                direction="outbound",
                **{"from": "+15550002", "to": "+442071234567"},
            ),
        ),
        (
            EV,
            a2,
            run.event(
                "call.ended", a2, f"e2-{u}", run.at(61.2), call_id=f"k2-{u}", duration_ms=61_200
            ),
        ),
        # a3: an SMS, then a routed end with no start that takes it below zero
        (EV, a3, run.event("sms.sent", a3, f"sms3-{u}", message_id=f"m3-{u}", to="+14155550100")),
        (
            EV,
            a3,
            run.event(
                "call.ended",
                a3,
                f"e3-{u}",
                run.at(90),
                call_id=f"k3-{u}",
                duration_ms=90_000,
                direction="outbound",
                **{"from": "+15550003", "to": "+33142685300"},
            ),
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


async def outbox(run: Run) -> list[tuple[bytes, bytes]]:
    """What waits in the outboxes for this run's accounts: (kind, account) per entry."""
    out = []
    for slot in range(run.keys.slots):
        for _, entry in await run.redis.xrange(run.keys.outbox(slot)):
            for f in unpack_entry(entry):
                if run.uid.encode() in f[b"k"]:
                    out.append((f[b"o"], f[b"k"]))
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
    assert [(d.value, d.headers[names.DLQ_HEADER_ERROR]) for d in dlq] == [
        (value, b"malformed_json") for _, _, value in bad
    ]


async def test_sigkill_after_apply_loses_nothing_and_publishes_everything_once(
    run: Run,
) -> None:
    items, balances, ids, bad = workload(run)
    assert balances == dict(zip(ids, (4_071_700, 940_000, -1_157_900), strict=True))
    await run.send_all(items)  # all there before the worker starts: one first batch

    doomed = Worker(run, failpoint="kill_after_apply")
    try:
        code = await doomed.wait(90)
    finally:
        doomed.kill()
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
    first = Runtime(run.settings)
    await first.start()
    try:
        await run.wait_idle(60)
    finally:
        await first.stop()
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

    second = Runtime(run.settings)
    await second.start()
    try:
        await run.wait_idle(60)
    finally:
        await second.stop()
    assert await run.committed_lag() == 0
    assert await run.outbox_backlog() == 0
    await check_published_once(run, balances, ids, bad)
