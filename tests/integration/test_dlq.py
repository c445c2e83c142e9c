"""Guarantee 4 on the real broker and Redis: bad input goes to the DLQ, the worker goes on.

Every refused record must reach ``billing.dlq`` with its original key and bytes untouched,
a header naming the specific reason and headers naming the source topic, partition and
offset; records after it in the same partition are still charged.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from aiokafka import TopicPartition

from charger.runtime import Runtime
from charger.store.keys import slot_of
from tests.integration.harness import T0, Run, at
from topics import names

EV = names.TELEPHONY_EVENTS
AC = names.BILLING_ACCOUNTS
RR = names.RECHARGE_RESULTS

Item = tuple[str, str, dict[str, Any] | bytes]


def sms(acct: str, eid: str, segments: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "type": "sms.sent",
        "account": acct,
        "time": T0,
        "message_id": f"m-{eid}",
        "to": "+14155550100",
        "segments": segments,
        **extra,
    }


def ended(acct: str, eid: str, duration_ms: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "type": "call.ended",
        "account": acct,
        "time": at(30),
        "call_id": f"k-{eid}",
        "duration_ms": duration_ms,
        **extra,
    }


def raw(value: dict[str, Any] | bytes) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


async def send_located(run: Run, items: list[Item]) -> list[tuple[str, int, int]]:
    """Send `items` in one go; return the (topic, partition, offset) each one got.

    One producer, keyed records: a partition's records get consecutive offsets in send
    order, ending just below the offset the broker acknowledged last for that partition.
    """
    await run.send_all(items)
    tps = [TopicPartition(t, slot_of(acct, names.TOPICS[t].partitions)) for t, acct, _ in items]
    total = Counter(tps)
    before: Counter[TopicPartition] = Counter()
    located = []
    for tp in tps:
        located.append((tp.topic, tp.partition, run.produced[tp] - total[tp] + before[tp]))
        before[tp] += 1
    return located


async def test_each_bad_record_goes_to_the_dlq_with_its_reason_and_good_ones_still_charge(
    run: Run,
) -> None:
    u = run.uid
    a = run.acct("good")  # the account whose good records surround the bad ones
    ghost = run.acct("ghost")  # never created
    uah = run.acct("uah")  # UAH account on the USD plan std-usd
    noplan = run.acct("noplan")  # plan that is not loaded
    local = run.acct("local")  # local-uah has no forwarded rate
    rt = Runtime(run.settings)
    await rt.start()
    try:
        await run.account(a, credit=1_000_000)
        await run.account(uah, currency="UAH")
        await run.account(noplan, plan="no-such-plan")
        await run.account(local, plan="local-uah", currency="UAH")
        await run.wait_idle(60)
        assert await run.balance(a) == 1_000_000

        route = {"direction": "outbound", "from": "+15550001", "to": "+14155550100"}
        oversize = sms(a, f"big-{u}", padding="x" * (64 * 1024 + 1))
        assert len(raw(oversize)) > 64 * 1024
        # (record, the reason it must be refused with, or None for a good record)
        script: list[tuple[Item, str | None]] = [
            ((EV, a, sms(a, f"g1-{u}")), None),
            ((EV, a, b"{not json"), "malformed_json"),
            ((EV, a, b""), "malformed_json"),
            ((EV, a, b"\xff\xfe\x00garbage"), "malformed_json"),
            ((EV, a, b'[{"id": "x", "type": "sms.sent"}]'), "not_an_object"),
            ((EV, a, b'"just a string"'), "not_an_object"),
            (
                (EV, a, {"id": f"t-{u}", "type": "call.teleported", "account": a, "time": T0}),
                "unknown_type",
            ),
            ((EV, a, {"id": f"nt-{u}", "account": a, "time": T0}), "unknown_type"),
            ((AC, a, sms(a, f"wrong-topic-{u}")), "unknown_type"),  # valid type, wrong topic
            ((EV, a, {k: v for k, v in sms(a, f"mf-{u}").items() if k != "to"}), "missing_field"),
            ((EV, a, ended(a, f"wt-{u}", "12")), "wrong_type"),
            ((EV, a, ended(a, f"wf-{u}", 12.0)), "wrong_type"),
            ((EV, a, ended(a, f"neg-{u}", -5)), "out_of_range"),
            ((EV, a, ended(a, f"abs-{u}", 10**12)), "out_of_range"),
            ((EV, a, sms(a, f"seg-{u}", segments=0)), "out_of_range"),
            ((EV, a, dict(sms(a, f"bt-{u}"), time="2026-11-22 10:00:00")), "invalid_time"),
            ((EV, a, dict(sms(a, f"bt2-{u}"), time="2026-11-22T10:00:00Z")), "invalid_time"),
            ((EV, ghost, sms(ghost, f"gh-{u}")), "unknown_account"),
            ((EV, a, oversize), "record_too_large"),
            ((EV, a, sms(a, f"g1-{u}", segments=3)), "conflict"),  # g1's id, other payload
            ((EV, uah, ended(uah, f"cm-{u}", 30_000, **route)), "currency_mismatch"),
            ((EV, noplan, sms(noplan, f"np-{u}")), "unknown_rate_plan"),
            (
                (
                    EV,
                    local,
                    ended(
                        local,
                        f"nr-{u}",
                        30_000,
                        direction="forwarded",
                        **{"from": "+380441234567", "to": "+380501234567"},
                    ),
                ),
                "no_rate",
            ),
            (
                (
                    AC,
                    a,
                    {
                        "id": f"cc-{u}",
                        "type": "account.upserted",
                        "account": a,
                        "time": T0,
                        "currency": "EUR",
                        "rate_plan": "std-usd",
                        "credit_limit_micros": 0,
                    },
                ),
                "currency_change",
            ),
            (
                (
                    RR,
                    a,
                    {
                        "id": f"rr-{u}",
                        "type": "recharge.result",
                        "account": a,
                        "time": T0,
                        "request_id": f"nobody-asked-{u}",
                        "status": "succeeded",
                        "amount_micros": 5_000_000,
                    },
                ),
                "unknown_request",
            ),
            # Good records after all of the above, in the same partitions.
            ((EV, a, sms(a, f"g2-{u}", segments=2)), None),
            (
                (
                    EV,
                    a,
                    {
                        "id": f"g3-{u}",
                        "type": "call.attempt",
                        "account": a,
                        "time": T0,
                        "call_id": f"k-g3-{u}",
                        "to": "+14155550100",
                    },
                ),
                None,
            ),
            (
                (
                    AC,
                    a,
                    {
                        "id": f"g4-{u}",
                        "type": "balance.credited",
                        "account": a,
                        "time": T0,
                        "amount_micros": 500_000,
                        "reference": "after-the-bad",
                    },
                ),
                None,
            ),
        ]
        items = [item for item, _ in script]
        located = await send_located(run, items)
        await run.wait_idle(60)
        # The worker keeps going: a good record after the whole bad stretch is charged.
        await run.send(EV, a, sms(a, f"g5-{u}"))
        await run.wait_idle(60)
    finally:
        await rt.stop()

    bad = {
        loc: (item, reason)
        for loc, (item, reason) in zip(located, script, strict=True)
        if reason is not None
    }
    good_tps = {loc[:2] for loc, (_, reason) in zip(located, script, strict=True) if reason is None}
    # Every bad event or account record of `a` shares a partition with good ones after it.
    assert {loc[:2] for loc, (item, _) in bad.items() if item[1] == a and item[0] != RR} <= good_tps

    dlq = await run.outputs(names.DLQ)
    assert len(dlq) == len(bad) == 24
    by_source: dict[tuple[str, int, int], Any] = {}
    for d in dlq:
        h = d.headers
        loc = (
            h[names.DLQ_HEADER_TOPIC].decode(),
            int(h[names.DLQ_HEADER_PARTITION]),
            int(h[names.DLQ_HEADER_OFFSET]),
        )
        assert loc not in by_source, f"two DLQ records for {loc}"
        by_source[loc] = d
    assert set(by_source) == set(bad)
    for loc, ((_, key, value), reason) in bad.items():
        d = by_source[loc]
        assert d.headers[names.DLQ_HEADER_ERROR].decode() == reason, (loc, d.headers)
        assert d.headers[names.DLQ_HEADER_DETAIL], loc
        assert d.value == raw(value), loc  # the original bytes, untouched
        assert d.key == key.encode(), loc

    # Nothing but the good records moved money: topup 1.00, g1 one segment, g2 two
    # segments, one ring-through attempt, a 0.50 top-up, g5 one segment.
    expected = 1_000_000 - 7_900 - 2 * 7_900 - 10_000 + 500_000 - 7_900
    assert await run.balance(a) == expected == 1_458_400
    ledger = await run.ledger()
    mine = [e for e in ledger if e["account"] == a]
    assert sorted(e["id"] for e in mine) == sorted(
        [
            f"ac:cr-{a}:topup",
            f"ev:g1-{u}:sms_out",
            f"ev:g2-{u}:sms_out",
            f"ev:g3-{u}:ring_through",
            f"ac:g4-{u}:topup",
            f"ev:g5-{u}:sms_out",
        ]
    )
    assert sum(e["amount_micros"] for e in mine) == expected
    assert {e["id"]: e["amount_micros"] for e in mine}[f"ev:g1-{u}:sms_out"] == -7_900
    for other in (ghost, uah, noplan, local):
        assert await run.balance(other) == 0
        assert [e for e in ledger if e["account"] == other] == []

    # ... and each refusal was counted under its reason.
    want = Counter(reason for _, reason in bad.values())
    for reason, n in want.items():
        got = rt.metrics.registry.get_sample_value("charger_dlq_total", {"reason": reason})
        assert got == n, reason
