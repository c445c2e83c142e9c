"""Guarantee 1 on the real broker and Redis: every event moves money once."""

from __future__ import annotations

from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.records import UK_NUMBER, call_ended, call_started, sms_sent
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS


async def test_duplicate_event_charges_once_also_at_other_offsets(run: Run) -> None:
    a = run.acct("dup")
    await run.account(a, credit=10_000_000)
    first = sms_sent(run, a, f"s1-{run.uid}", segments=2)
    # The same record three times: back to back, and again after other traffic.
    await run.send_all(
        [(EV, a, first), (EV, a, first), (EV, a, sms_sent(run, a, f"s2-{run.uid}", segments=1))]
    )
    async with running(run.settings):
        await run.wait_idle()
        await run.send(EV, a, first)  # a later offset, a later batch
        await run.wait_idle()
    ledger = [e for e in await run.ledger() if e["account"] == a]
    kinds = sorted(e["kind"] for e in ledger)
    assert kinds == ["sms_out", "sms_out", "topup"]
    # std-usd: outbound SMS 0.0079 per segment -> 2 segments + 1 segment
    assert await run.balance(a) == 10_000_000 - 2 * 7900 - 7900
    assert sum(e["amount_micros"] for e in ledger) == await run.balance(a)
    assert len({e["id"] for e in ledger}) == len(ledger)


async def test_same_id_other_payload_is_a_conflict_in_the_dlq(run: Run) -> None:
    a = run.acct("conf")
    await run.account(a, credit=10_000_000)
    eid = f"c1-{run.uid}"
    await run.send_all(
        [(EV, a, sms_sent(run, a, eid, segments=1)), (EV, a, sms_sent(run, a, eid, segments=3))]
    )
    async with running(run.settings):
        await run.wait_idle()
    dlq = await run.outputs(names.DLQ)
    assert [d.headers[headers_of.ERROR] for d in dlq] == [b"conflict"]
    assert dlq[0].json()["segments"] == 3  # the original bytes of the second record
    assert await run.balance(a) == 10_000_000 - 7900


async def test_call_settles_from_duration_with_increments(run: Run) -> None:
    a = run.acct("call")
    await run.account(a, credit=5_000_000)
    cid = f"k-{run.uid}"
    start = call_started(run, a, f"cs-{run.uid}", call_id=cid, to=UK_NUMBER)
    end = call_ended(run, a, f"ce-{run.uid}", call_id=cid, duration_ms=61_200)
    await run.send_all([(EV, a, start), (EV, a, end), (EV, a, end)])
    async with running(run.settings):
        await run.wait_idle()
    calls = [e for e in await run.ledger() if e["kind"] == "call"]
    assert len(calls) == 1
    # std-usd to 44: 0.90/min, 60/6, connect 0.05: 61.2 s -> 62 s -> 60 + 6 billed
    assert calls[0]["quantity"] == 66
    assert calls[0]["amount_micros"] == -(990_000 + 50_000)
    assert calls[0]["balance_after_micros"] == await run.balance(a)


async def test_scripts_reload_after_script_flush(run: Run) -> None:
    a = run.acct("flush")
    await run.account(a, credit=10_000_000)
    async with running(run.settings) as rt:
        await run.wait_idle()
        await run.redis.script_flush()  # as after a failover to a replica without the scripts
        await run.send(EV, a, sms_sent(run, a, f"f1-{run.uid}", segments=1))
        await run.wait_idle()
    assert await run.balance(a) == 10_000_000 - 7900
    assert rt.metrics.errors.labels("batch")._value.get() == 0
