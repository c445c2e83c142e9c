"""The published contract: generated files are current, valid, and agree with the decoder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

import charger_topics
from charger.events import Invalid, decode
from charger_topics import headers as headers_of
from charger_topics import names
from charger_topics.records import RECORDS, types_on
from charger_topics.schema import (
    CONSUMED,
    asyncapi_document,
    load_schema,
    record_schema,
    rendered_files,
    required_keys,
)

PACKAGE = Path(charger_topics.__file__).resolve().parent
T = "2026-11-22T10:00:00.123Z"


def _rec(rtype: str, account: str | None = "acc-42", **fields: Any) -> dict[str, Any]:
    head: dict[str, Any] = {"id": f"{rtype}-1", "type": rtype, "time": T}
    if account is not None:
        head["account"] = account
    return head | fields


SAMPLES: dict[str, dict[str, Any]] = {
    r["type"]: r
    for r in (
        _rec(
            "call.started",
            call_id="c-1",
            direction="outbound",
            to="+14155550100",
            **{"from": "+442071234567"},
        ),
        _rec("call.ended", call_id="c-1", duration_ms=61_250),
        _rec("call.attempt", call_id="c-2", to="+33142685300"),
        _rec("sms.sent", message_id="m-1", to="+14155550100", segments=2),
        _rec("sms.received", message_id="m-2", **{"from": "+14155550100"}),
        _rec(
            "account.upserted",
            currency="USD",
            rate_plan="standard-usd",
            credit_limit_micros=0,
            auto_recharge={
                "enabled": True,
                "threshold_micros": 5_000_000,
                "amount_micros": 20_000_000,
            },
            notify_email="billing@example.com",
        ),
        _rec("balance.credited", amount_micros=10_000_000, reference="pay-77"),
        _rec(
            "fee.charged",
            amount_micros=5_000_000,
            item="number_purchase",
            description="Phone number +380441234567",
            reference="+380441234567",
            require_funds=True,
        ),
        _rec("balance.adjusted", amount_micros=-1_500_000, reason="double-billed call refund"),
        _rec(
            "subscription.upserted",
            subscription_id="numbers",
            item="number_rental",
            description="Rented numbers",
            price_micros=5_000_000,
            period="month",
            billing="arrears",
            quantity=3,
            starts_at=T,
        ),
        _rec(
            "fee.applied",
            fee_id="fee-1",
            ledger_entry_id="ac:fee-1:fee",
            amount_micros=5_000_000,
            balance_after_micros=15_000_000,
        ),
        _rec("fee.refused", fee_id="fee-2", reason="insufficient_funds", available_micros=2_000),
        _rec(
            "recharge.result",
            request_id="rr-1",
            status="failed",
            amount_micros=20_000_000,
            reason="card declined",
        ),
        _rec(
            "rate_plan.upserted",
            account=None,
            plan={
                "id": "std-usd",
                "currency": "USD",
                "voice": [{"prefix": "1", "direction": "outbound", "per_minute": "0.60"}],
            },
        ),
        _rec("call.cutoff", call_id="c-1", reason="balance exhausted", cutoff_at=T),
        _rec(
            "account.suspended",
            reason="balance exhausted",
            available_micros=-120_000,
            effective_at=T,
            balance_micros=-20_000,
        ),
        _rec("account.restored", reason="recharged", available_micros=19_880_000, effective_at=T),
        _rec(
            "recharge.requested",
            request_id="rq-1",
            amount_micros=20_000_000,
            available_micros=4_000_000,
            balance_micros=4_500_000,
            threshold_micros=5_000_000,
            currency="USD",
        ),
        _rec(
            "ledger.entry",
            kind="call",
            amount_micros=-72_000,
            currency="USD",
            balance_after_micros=4_928_000,
            source_event_id="call.ended-1",
            source_topic="telephony.events",
            quantity=66,
            unit="second",
            unit_price_micros=60_000,
            call_id="c-1",
            increments="60/6",
            direction="outbound",
        ),
        _rec(
            "recharge_failed",
            email="billing@example.com",
            reason="card declined",
            request_id="rr-1",
        ),
        _rec("low_balance", available_micros=4_000_000, threshold_micros=5_000_000),
        _rec("balance_exhausted", reason="balance exhausted", available_micros=0, effective_at=T),
        _rec("call_cut_off", call_id="c-1", reason="balance exhausted"),
        _rec("session_expired", call_id="c-1", charged_micros=600_000),
    )
}


def test_generated_files_are_current() -> None:
    expected = rendered_files()
    for rel, text in expected.items():
        path = PACKAGE / rel
        assert path.is_file(), f"{rel} missing: run python -m charger_topics.schema"
        assert path.read_text(encoding="utf-8") == text, (
            f"{rel} stale: run python -m charger_topics.schema"
        )
    on_disk = {f"schemas/{p.name}" for p in (PACKAGE / "schemas").glob("*.json")}
    assert on_disk == {k for k in expected if k.startswith("schemas/")}


@pytest.mark.parametrize("rtype", sorted(RECORDS))
def test_schema_is_valid_draft_2020_12(rtype: str) -> None:
    schema = record_schema(RECORDS[rtype])
    jsonschema.Draft202012Validator.check_schema(schema)
    assert load_schema(rtype) == schema
    assert schema["$id"] == f"https://charger.dev/schemas/{rtype}.json"
    assert schema["additionalProperties"] is True


def test_load_schema_refuses_unknown_type() -> None:
    with pytest.raises(KeyError):
        load_schema("../asyncapi")


def test_account_is_optional_only_when_not_keyed_by_account() -> None:
    for rt in RECORDS.values():
        assert ("account" in required_keys(rt)) == rt.keyed_by_account


def test_every_record_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(RECORDS)


@pytest.mark.parametrize("rtype", sorted(SAMPLES))
def test_sample_passes_schema_and_decoder(rtype: str) -> None:
    sample = SAMPLES[rtype]
    jsonschema.Draft202012Validator(load_schema(rtype)).validate(sample)
    decoded = decode(orjson.dumps(sample), frozenset({rtype}))
    assert not isinstance(decoded, Invalid), decoded
    assert decoded == sample


def test_readme_examples_are_valid_records() -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.DOTALL)
    inputs = {rt.type for t in CONSUMED for rt in types_on(t)}
    seen: set[str] = set()
    for block in blocks:
        record = orjson.loads(block)
        jsonschema.Draft202012Validator(load_schema(record["type"])).validate(record)
        if record["type"] in inputs:
            assert not isinstance(decode(block.encode(), frozenset(inputs)), Invalid), block
        seen.add(record["type"])
    assert inputs <= seen
    # the commands whose fields changed meaning are shown as they are sent
    assert {"call.cutoff", "account.suspended", "account.restored", "recharge.requested"} <= seen


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_document_on_disk_is_the_generated_one() -> None:
    on_disk = yaml.safe_load((PACKAGE / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert on_disk == orjson.loads(orjson.dumps(asyncapi_document()))


def test_asyncapi_covers_every_topic() -> None:
    doc: dict[str, Any] = yaml.safe_load((PACKAGE / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["kafka"]["protocol"] == "kafka"
    by_address = {ch["address"]: ch for ch in doc["channels"].values()}
    assert set(by_address) == set(names.TOPICS)
    typed: set[str] = set()
    for address, channel in by_address.items():
        spec = names.TOPICS[address]
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == spec.partitions
        if spec.compacted:
            assert kafka["topicConfiguration"]["cleanup.policy"] == ["compact"]
        assert channel["messages"], address
        for ref in channel["messages"].values():
            message = _resolve(doc, ref["$ref"])
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
            assert message["bindings"]["kafka"]["key"]["description"] == spec.key
            payload = message["payload"]
            headers = message["headers"]["properties"]
            assert headers_of.TRACEPARENT in headers, (address, message["name"])
            if address == names.DLQ:
                assert "original bytes untouched" in payload["description"]
                assert set(message["headers"]["required"]) == set(headers_of.DLQ_REQUIRED)
                assert headers_of.ERROR in headers
                assert headers_of.DLT_ORIGINAL_TIMESTAMP_TYPE in headers
                continue
            # charger always writes a traceparent; an input may have one
            required = message["headers"].get("required", [])
            assert required == ([] if address in CONSUMED else [headers_of.TRACEPARENT])
            assert payload["$ref"].startswith("#/components/schemas/")
            schema = _resolve(doc, payload["$ref"])
            rtype = schema["properties"]["type"]["const"]
            assert RECORDS[rtype].topic == address
            assert schema == record_schema(RECORDS[rtype])
            typed.add(rtype)
    assert typed == set(RECORDS)


def test_asyncapi_operations_say_what_charger_does() -> None:
    doc: dict[str, Any] = yaml.safe_load((PACKAGE / "asyncapi.yaml").read_text(encoding="utf-8"))
    consumed = {names.TELEPHONY_EVENTS, names.BILLING_ACCOUNTS, names.RECHARGE_RESULTS}
    consumed.add(names.RATE_PLANS)
    actions: dict[str, str] = {}
    for op in doc["operations"].values():
        channel = _resolve(doc, op["channel"]["$ref"])
        actions[channel["address"]] = op["action"]
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            _resolve(doc, ref["$ref"])
    assert actions == {t: "receive" if t in consumed else "send" for t in names.TOPICS}
