"""The pure planning core: what each record becomes, with no I/O."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from charger.charging.planner import Planner
from charger.charging.records import AccountInfo, CallState, Inbound, Reads
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import Move, SettleCall
from charger.rating import load_plans
from charger.runtime import default_plans_path
from charger_topics import names
from tests.kit.ops import op_names, the_one

PLANS = load_plans(default_plans_path())
T0 = "2026-11-22T10:00:00.000Z"
USD = AccountInfo("USD", "std-usd", 0)


def rec(
    offset: int,
    body: dict[str, Any] | bytes,
    topic: str = names.TELEPHONY_EVENTS,
    key: bytes | None = b"a1",
) -> Inbound:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    # On the key's own partition, as the default partitioner puts it.
    partition = slot_of(key.decode(), 8) if key else 0
    return Inbound(topic, partition, offset, key, raw)


def sms(eid: str, segments: int = 1, account: str = "a1") -> dict[str, Any]:
    return {
        "id": eid,
        "type": "sms.sent",
        "account": account,
        "time": T0,
        "message_id": "m",
        "to": "+14155550100",
        "segments": segments,
    }


def plan(
    batch: list[Inbound], reads: Reads | None = None, known: dict[str, AccountInfo] | None = None
) -> tuple[Planner, Any]:
    p = Planner(Keys("t", 8), lambda: PLANS, dict(known if known is not None else {"a1": USD}))
    prepared = p.prepare(batch)
    return p, p.plan(prepared, reads or Reads())


def opcodes(outcome: Any) -> list[str]:
    return op_names(outcome)


def test_in_batch_duplicate_is_counted_not_planned() -> None:
    _, out = plan([rec(0, sms("e1")), rec(1, sms("e1"))])
    assert opcodes(out) == ["Move"]
    assert out.results[("sms.sent", "duplicate")] == 1


def test_same_id_other_payload_in_batch_is_a_conflict() -> None:
    _, out = plan([rec(0, sms("e1", 1)), rec(1, sms("e1", 2))])
    assert opcodes(out) == ["Move", "Refuse"]
    assert out.dlq == {"conflict": 1}


def test_seen_before_with_same_fingerprint_is_a_duplicate() -> None:
    p = Planner(Keys("t", 8), lambda: PLANS, {"a1": USD})
    first = p.prepare([rec(0, sms("e1"))])
    fp = first.decoded[0].fp
    reads = Reads(seen={first.decoded[0].seen_key: fp.encode()})
    out = p.plan(p.prepare([rec(5, sms("e1"))]), reads)
    assert opcodes(out) == []
    assert out.results[("sms.sent", "duplicate")] == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (orjson.dumps({**sms("e1"), "type": "fax.sent"}), "unknown_type"),
        (orjson.dumps({k: v for k, v in sms("e1").items() if k != "to"}), "missing_field"),
        (orjson.dumps({**sms("e1"), "segments": "2"}), "wrong_type"),
        (orjson.dumps({**sms("e1"), "segments": 0}), "out_of_range"),
        (orjson.dumps({**sms("e1"), "time": "yesterday"}), "invalid_time"),
        (orjson.dumps(sms("e1", account="nobody")), "key_mismatch"),
    ],
)
def test_refused_records_go_to_the_dlq_with_their_reason(raw: bytes, reason: str) -> None:
    _, out = plan([rec(0, raw), rec(1, sms("good"))])
    assert out.dlq == {reason: 1}
    assert opcodes(out) == ["Refuse", "Move"]  # the good record after it is still charged


def test_unknown_account_keyed_by_itself_is_refused_and_the_batch_goes_on() -> None:
    _, out = plan([rec(0, sms("e1", account="nobody"), key=b"nobody"), rec(1, sms("good"))])
    assert out.dlq == {"unknown_account": 1}
    assert opcodes(out) == ["Refuse", "Move"]


def test_record_keyed_by_another_account_is_refused_before_it_touches_state() -> None:
    p, out = plan([rec(0, sms("e1"), key=b"a2"), rec(1, sms("e2"), key=None)])
    assert out.dlq == {"key_mismatch": 2}
    assert out.results == {}
    assert p.accounts == {"a1": USD}


def test_usage_amount_is_negative_and_priced_by_plan() -> None:
    _, out = plan([rec(0, sms("e1", 3))])
    assert the_one(out, Move).amount_micros == -3 * 7900


def test_end_without_start_or_route_is_parked_then_settled_by_the_late_start() -> None:
    end = {
        "id": "e9",
        "type": "call.ended",
        "account": "a1",
        "time": T0,
        "call_id": "c1",
        "duration_ms": 30_000,
    }
    _, out = plan([rec(0, end)])
    assert opcodes(out) == ["ParkEnd"]
    start = {
        "id": "s9",
        "type": "call.started",
        "account": "a1",
        "time": T0,
        "call_id": "c1",
        "direction": "outbound",
        "from": "+1555",
        "to": "+14155550100",
    }
    p = Planner(Keys("t", 8), lambda: PLANS, {"a1": USD})
    prepared = p.prepare([rec(1, start)])
    call_key = prepared.decoded[0].call_key
    reads = Reads(
        calls={call_key: CallState("pending_end", duration_ms=30_000, end_id="e9", end_time=T0)}
    )
    out = p.plan(prepared, reads)
    assert opcodes(out) == ["SettleCall"]
    settle = the_one(out, SettleCall)
    assert settle.amount_micros == -300_000  # 30 s at 0.60/min, 1/1
    assert b'"id":"ev:e9:call"' in settle.ledger_head  # the ledger id comes from the end event


def test_start_after_settled_call_moves_nothing() -> None:
    start = {
        "id": "s9",
        "type": "call.started",
        "account": "a1",
        "time": T0,
        "call_id": "c1",
        "direction": "outbound",
        "from": "+1555",
        "to": "+14155550100",
    }
    p = Planner(Keys("t", 8), lambda: PLANS, {"a1": USD})
    prepared = p.prepare([rec(1, start)])
    out = p.plan(prepared, Reads(calls={prepared.decoded[0].call_key: CallState("ended")}))
    assert opcodes(out) == ["Remember"]


def test_currency_change_of_existing_account_is_refused() -> None:
    up = {
        "id": "u2",
        "type": "account.upserted",
        "account": "a1",
        "time": T0,
        "currency": "UAH",
        "rate_plan": "local-uah",
        "credit_limit_micros": 0,
    }
    p, out = plan([rec(0, up, names.BILLING_ACCOUNTS)])
    assert out.dlq == {"currency_change": 1}
    assert p.accounts["a1"].currency == "USD"


def test_no_float_reaches_the_script_arguments() -> None:
    end = {
        "id": "e1",
        "type": "call.ended",
        "account": "a1",
        "time": T0,
        "call_id": "c1",
        "duration_ms": 61_001,
        "direction": "outbound",
        "from": "+1",
        "to": "+442071234567",
    }
    _, out = plan([rec(0, end), rec(1, sms("e2"))])
    for sb in out.plan.slots.values():
        values, _ = sb.encode()
        assert values and all(not isinstance(a, float) for a in values)
