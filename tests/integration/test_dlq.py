"""Guarantee 4 on the real broker and Redis: bad input goes to the DLQ, the worker goes on.

The whole bad-input corpus (``tests/kit/corpus.py``) is sent between good records. Every bad
record must reach ``billing.dlq`` exactly once, with its original key and bytes, its own
reason, a detail naming what was wrong and headers naming the source topic, partition and
offset (Spring's dead-letter headers, `charger_topics.headers`); every good record around them is
charged exactly; refused rate plans leave the plan in force; a second worker reading the
same plans topic writes no DLQ record again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiokafka import TopicPartition

from charger.protocol.keys import slot_of
from charger.rating.versions import record_key
from charger.runtime import Runtime
from charger_topics import headers as headers_of
from charger_topics import names, reasons
from tests.kit.corpus import (
    AC,
    EV,
    RP,
    Ids,
    cases,
    credit,
    plan_doc,
    plan_record,
    prelude,
    result,
    sms,
    upsert,
    world,
    world_plans,
)
from tests.kit.harness import Item, Run
from tests.kit.outputs import recharge_requests
from tests.kit.waits import until
from tests.kit.worker import running

SMS_OUT = 7_900  # std-usd, one segment
Loc = tuple[str, int, int]


async def send_located(run: Run, items: list[Item]) -> list[Loc]:
    """Send `items` in one go; return the (topic, partition, offset) each one got.

    One producer, keyed records: a partition's records get consecutive offsets in send
    order, ending just below the offset the broker acknowledged last for that partition.
    """
    await run.send_all(items)
    tps = [TopicPartition(t, slot_of(key, names.TOPICS[t].partitions)) for t, key, _ in items]
    total = Counter(tps)
    before: Counter[TopicPartition] = Counter()
    located = []
    for tp in tps:
        located.append((tp.topic, tp.partition, run.produced[tp] - total[tp] + before[tp]))
        before[tp] += 1
    return located


def dlq_counts(rt: Runtime) -> Counter[str]:
    get = rt.metrics.registry.get_sample_value
    return Counter({r: int(get("charger_dlq_total", {"reason": r}) or 0) for r in reasons.ALL})


async def setup_world(run: Run, ids: Ids) -> int:
    """The accounts and plans the corpus assumes; returns `good`'s opening balance."""
    for acct, (currency, plan) in world(ids).items():
        if acct not in (ids.rch, ids.good):
            await run.account(acct, plan=plan, currency=currency)
    await run.account(ids.good, credit=10_000_000)
    await run.account(ids.pacct, plan=ids.p, credit=1_000_000)
    auto = {"enabled": True, "threshold_micros": 10_000_000, "amount_micros": 60_000_000}
    await run.send(AC, ids.rch, upsert(ids, "up-rch", ids.rch, auto_recharge=auto))
    await run.send(AC, ids.rch, credit(ids, "cr-rch", ids.rch, amount_micros=10_000_000))
    await run.wait_idle(60)
    # One SMS takes `rch` below its threshold: request 1 goes out and succeeds.
    await run.send(EV, ids.rch, sms(ids, "low", ids.rch))
    await run.wait_idle(60)
    requests = await recharge_requests(run)
    assert [r["request_id"] for r in requests] == [ids.request]
    await run.send(names.RECHARGE_RESULTS, ids.rch, result(ids, "ok"))  # 50.00 succeeded
    await run.wait_idle(60)
    return 10_000_000


async def test_the_corpus_lands_in_the_dlq_once_each_and_good_records_still_charge(
    run: Run,
) -> None:
    ids = Ids(run.uid)
    corpus = cases(ids)
    g = ids.good
    await run.send_all(
        [
            (RP, record_key(d["id"], d.get("version", 0)), plan_record(ids, f"w-{d['id']}", d))
            for d in world_plans(ids)
        ]
    )
    async with running(run.settings) as rt:
        opening = await setup_world(run, ids)
        counted, refused = dlq_counts(rt), rt.plans.refused  # a shared broker may hold older ones
        # A good record after every bad one, in the bad one's partition where it has one.
        items: list[Item] = [(t, k, v) for t, k, v in prelude(ids)]
        good_ids = ["g1"]
        credits = 0
        at: list[int] = []  # where each case is in `items`
        for n, case in enumerate(corpus):
            assert case.key is not None
            at.append(len(items))
            items.append((case.topic, case.key, case.value))
            if case.topic == AC:
                items.append((AC, g, credit(ids, f"okc{n}", amount_micros=1_000)))
                credits += 1_000
            else:
                items.append((EV, g, sms(ids, f"ok{n}")))
                good_ids.append(f"ok{n}")
        located = await send_located(run, items)
        n_plans = sum(c.topic == RP for c in corpus)
        await until(lambda: rt.plans.refused - refused == n_plans, "plan refusals")
        await run.wait_idle(90)

        # Refused versions left version 1 of plan p in force; a valid version 2 replaces it.
        assert rt.plans.current()[ids.p].latest.sms_out_micros == 10_000
        await run.send(EV, ids.pacct, sms(ids, "pv1", ids.pacct))
        await run.wait_idle(60)
        v2 = plan_record(ids, "v2", plan_doc(ids.p, sms_out="0.0200"))
        await run.send(RP, ids.p, v2)
        await until(lambda: rt.plans.current()[ids.p].latest.sms_out_micros == 20_000, "plan v2")
        await run.send(EV, ids.pacct, sms(ids, "pv2", ids.pacct))
        await run.wait_idle(60)

        # A second worker reads the same plans topic: every refusal is below the watermark.
        async with running(run.settings) as rt2:
            assert sum(dlq_counts(rt2).values()) == 0
            assert rt2.plans.current()[ids.p].latest.sms_out_micros == 20_000
            await run.send(EV, g, sms(ids, "last"))
            good_ids.append("last")
            await run.wait_idle(90)

    # Each bad record: one DLQ record with its reason, detail, source and original bytes.
    bad = {located[i]: case for i, case in zip(at, corpus, strict=True)}
    dlq = await run.outputs(names.DLQ)
    by_source: dict[Loc, Any] = {}
    for d in dlq:
        h = d.headers
        loc = (
            h[headers_of.DLT_ORIGINAL_TOPIC].decode(),
            headers_of.decode_int32(h[headers_of.DLT_ORIGINAL_PARTITION]),
            headers_of.decode_int64(h[headers_of.DLT_ORIGINAL_OFFSET]),
        )
        assert loc not in by_source, f"two DLQ records for {loc}"
        by_source[loc] = d
    assert set(by_source) == set(bad), {c.kind for loc, c in bad.items() if loc not in by_source}
    for loc, case in bad.items():
        d = by_source[loc]
        h = d.headers
        assert h[headers_of.ERROR].decode() == case.reason, (case.kind, h)
        assert h[headers_of.DLT_EXCEPTION_FQCN].decode() == f"charger.refused.{case.reason}"
        assert case.detail in h[headers_of.DLT_EXCEPTION_MESSAGE].decode(), (case.kind, h)
        assert d.value == case.value, case.kind  # a null value stays null
        assert d.key == str(case.key).encode(), case.kind
    assert dlq_counts(rt) - counted == Counter(c.reason for c in corpus)

    # Only the good records moved money, each exactly once.
    n_sms = len(good_ids)
    expected = opening + credits - n_sms * SMS_OUT
    assert await run.balance(g) == expected
    ledger = await run.ledger()
    mine = [e for e in ledger if e["account"] == g]
    want = {f"ac:cr-{g}:topup"} | {f"ev:{i}-{ids.uid}:sms_out" for i in good_ids}
    want |= {f"ac:okc{n}-{ids.uid}:topup" for n, c in enumerate(corpus) if c.topic == AC}
    assert sorted(e["id"] for e in mine) == sorted(want)
    assert sum(e["amount_micros"] for e in mine) == expected
    assert await run.balance(ids.pacct) == 1_000_000 - 10_000 - 20_000
    assert await run.balance(ids.rch) == 10_000_000 - SMS_OUT + 50_000_000
    for other in (ids.ghost, ids.uah, ids.noplan, ids.local, ids.big):
        assert await run.balance(other) == 0
        assert [e for e in ledger if e["account"] == other] == []
