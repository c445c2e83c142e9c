"""The chaos checker's invariants, on hand-made outputs: each one must be able to fire."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from charger_tools.chaos import FEE_INVARIANTS
from charger_tools.chaos.checker import Observed, check, expectations
from charger_tools.chaos.workload import ChaosConfig, CohortCall, cohort, fault_plan

T = "2026-11-22T10:00:00.000Z"


def ev(eid: str, typ: str, acct: str = "a1", **fields: Any) -> bytes:
    return orjson.dumps({"id": eid, "type": typ, "account": acct, "time": T, **fields})


def entry(eid: str, source: str, amount: int, acct: str = "a1", bal: int = 0) -> bytes:
    doc = {"id": eid, "account": acct, "amount_micros": amount, "source_event_id": source}
    return orjson.dumps({**doc, "balance_after_micros": bal})


CREDIT = ev("c1", "balance.credited", amount_micros=5_000_000)
SMS = ev("s1", "sms.sent", message_id="m1")
START = ev("k1-start", "call.started", call_id="k1")
END = ev("k1-end", "call.ended", call_id="k1")
FAILED = ev("r1", "recharge.result", request_id="rq-a1-1", status="failed")


def clean() -> Observed:
    return Observed(
        ledger=[
            entry("ac:c1:topup", "c1", 5_000_000, bal=5_000_000),
            entry("ev:s1:sms_out", "s1", -7_900, bal=4_992_100),
            entry("ev:k1-end:call", "k1-end", -600_000, bal=4_392_100),
        ],
        balances={"a1": 4_392_100},
        held={"a1": 0},
        call_states={("a1", "k1"): "ended"},
        request_states={("a1", "rq-a1-1"): "failed"},
    )


SENT = [CREDIT, SMS, SMS, START, END, FAILED]


def test_a_clean_run_passes_and_republished_entries_are_not_duplicates() -> None:
    seen = clean()
    seen.ledger.append(seen.ledger[1])  # the relay resent the same bytes
    r = check(expectations(SENT), [], seen)
    assert (r["lost"], r["duplicated"], r["mismatched_accounts"]) == (0, 0, 0)
    assert r["ledger_republished"] == 1
    assert r["valid_events"] == 5


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda o: o.ledger.pop(1), "lost"),  # an SMS with no ledger entry
        (lambda o: o.call_states.pop(("a1", "k1")), "lost"),  # a start with no session
        (lambda o: o.request_states.update({("a1", "rq-a1-1"): "pending"}), "lost"),
        (lambda o: o.ledger.append(entry("ev:s1:sms_out", "s1", -15_800)), "duplicated"),
        # re-created after Redis forgot, with another balance after: apart, not doubled
        (
            lambda o: o.ledger.append(entry("ev:s1:sms_out", "s1", -7_900, bal=1)),
            "recreated_other_balance",
        ),
        (lambda o: o.balances.update({"a1": 4_392_101}), "mismatched_accounts"),
    ],
)
def test_each_invariant_fires(damage: Any, field: str) -> None:
    seen = clean()
    damage(seen)
    assert check(expectations(SENT), [], seen)[field] == 1


def test_an_event_in_the_dlq_is_not_lost() -> None:
    seen = clean()
    seen.ledger.pop(1)
    seen.balances["a1"] += 7_900
    seen.dlq.append((SMS, "no_rate"))
    r = check(expectations(SENT), [], seen)
    assert (r["lost"], r["mismatched_accounts"], r["dlq"]) == (0, 0, 1)


def cohort_call(doomed: bool) -> CohortCall:
    return CohortCall("c9", 300_000, "cc", 0, 90_000 if doomed else 10_000, doomed)


def cutoff(at: str) -> bytes:
    doc = {"id": "cutoff:c9:cc", "type": "call.cutoff", "account": "c9", "call_id": "cc"}
    return orjson.dumps({**doc, "cutoff_at": at})


def test_missed_and_spurious_cutoffs() -> None:
    start = ev("cc-start", "call.started", acct="c9", call_id="cc")
    sent = [start]
    calm = Observed(balances={}, call_states={("c9", "cc"): "ended"})
    assert check(expectations(sent), [cohort_call(True)], calm)["missed_cutoffs"] == 1
    cut = Observed(call_states={("c9", "cc"): "cut"}, commands=[(cutoff(T[:17] + "30.000Z"), 0)])
    r = check(expectations(sent), [cohort_call(True)], cut)
    assert r["missed_cutoffs"] == 0
    assert r["cutoffs"]["cutoff_at_error_ms_max"] == 0  # $0.30 at $0.60/min: 30 s
    r = check(expectations(sent), [cohort_call(False)], cut)
    assert r["cutoffs"]["spurious_cohort_cutoffs"] == 1


def test_workload_is_deterministic_and_faults_are_spread() -> None:
    cfg = ChaosConfig(events=100_000, kills=10)
    assert cohort(cfg) == cohort(cfg)
    calls = cohort(cfg)
    assert len(calls) == 100 and sum(c.doomed for c in calls) == 50
    for c in calls:
        assert c.opening_micros % 10_000 == 0
        if c.doomed:
            assert c.duration_ms >= c.affordable_ms + 40_000
        else:
            assert c.duration_ms <= c.affordable_ms - 5_000 + 999
    plan = fault_plan(cfg)
    kills = [f.at for f in plan.faults if f.action == "kill"]
    assert len(kills) == 10 and all(0.05 <= k <= 0.95 for k in kills)
    assert sorted(f.action for f in plan.faults if f.action != "kill") == [
        "join",
        "leave",
        "redis_restart",
    ]
    assert plan.due(0.5) and not plan.due(0.5)  # due faults are handed out once


FEE = ev("f1", "fee.charged", amount_micros=1_000_000, item="other", description="x")
DEAR = ev("f2", "fee.charged", amount_micros=9_000_000_000, item="other", require_funds=True)
SCHEDULED = "sub:a1:numbers:2026-11-21:fee"


def fee_entry(eid: str, source: str, amount: int, subscription: str = "", day: str = "") -> bytes:
    doc = orjson.loads(entry(eid, source, amount))
    if subscription:
        doc |= {"subscription_id": subscription, "period_start": day}
    return orjson.dumps(doc)


def result(fee_id: str, typ: str) -> bytes:
    return orjson.dumps({"fee_id": fee_id, "type": typ})


def with_fees() -> Observed:
    seen = clean()
    seen.ledger += [
        fee_entry("ac:f1:fee", "f1", -1_000_000),
        fee_entry(SCHEDULED, "numbers:2026-11-21", -200_000, "numbers", "2026-11-21"),
    ]
    seen.charge_results = [result("f1", "fee.applied"), result("f2", "fee.refused")]
    seen.balances["a1"] -= 1_200_000
    return seen


def fee_figures(seen: Observed) -> dict[str, Any]:
    report = check(expectations([*SENT, FEE, DEAR]), [], seen, {SCHEDULED})
    fees: dict[str, Any] = report["fees"]
    return fees | {"lost": report["lost"], "mismatched_accounts": report["mismatched_accounts"]}


def test_fees_of_a_clean_run_pass() -> None:
    fees = fee_figures(with_fees())
    assert fees["lost"] == fees["mismatched_accounts"] == 0
    assert [fees[k] for k in FEE_INVARIANTS] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda o: o.ledger.pop(), "scheduled_missed"),
        (
            lambda o: o.ledger.append(
                fee_entry("sub:a1:numbers:other:fee", "x", -1, "numbers", "2026-11-21")
            ),
            "periods_charged_twice",
        ),
        (lambda o: o.charge_results.append(result("f1", "fee.refused")), "fee_results_wrong"),
        (lambda o: o.charge_results.pop(0), "fee_results_wrong"),
        (lambda o: o.charge_results.pop(), "lost"),  # refused, but no result says so
    ],
)
def test_each_fee_invariant_fires(damage: Any, field: str) -> None:
    seen = with_fees()
    damage(seen)
    assert fee_figures(seen)[field] >= 1
