"""Rate plan documents and files: strict money, clear errors, file and directory loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest

import charger.rating
from charger.rating import (
    Increments,
    PlanError,
    RatePlan,
    VoiceRate,
    call_charge,
    load_plans,
    plan_from_dict,
    sms_charge,
)

SAMPLE_PLANS = Path(charger.rating.__file__).parent.parent / "sample" / "plans.yaml"

PLAN_YAML = """\
id: std-usd
currency: USD
voice:
  - {prefix: "1", direction: outbound, per_minute: "0.60", connect_fee: "0.00", increments: "60/6"}
  - {prefix: "", direction: inbound, per_minute: "0", increments: "60/60"}
sms: {outbound_per_segment: "0.0075", inbound_per_segment: "0.0025"}
ring_through_attempt: "0.01"
"""


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "p1",
        "currency": "USD",
        "voice": [{"prefix": "1", "direction": "outbound", "per_minute": "0.60"}],
    }
    doc.update(overrides)
    return doc


def voice(**fields: Any) -> dict[str, Any]:
    """A minimal plan whose one voice rate has ``fields`` (per_minute defaults to "0.60")."""
    rate: dict[str, Any] = {"prefix": "1", "direction": "outbound", **fields}
    if not any(key.startswith("per_minute") for key in fields):
        rate["per_minute"] = "0.60"
    return minimal(voice=[rate])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_file_with_one_plan(tmp_path: Path) -> None:
    plans = load_plans(write(tmp_path / "std.yaml", PLAN_YAML))
    assert list(plans) == ["std-usd"]
    assert plans["std-usd"] == RatePlan(
        id="std-usd",
        currency="USD",
        voice=(
            VoiceRate("1", "outbound", 600_000, 0, Increments(60, 6)),
            VoiceRate("", "inbound", 0, 0, Increments(60, 60)),
        ),
        sms_out_micros=7_500,
        sms_in_micros=2_500,
        ring_through_micros=10_000,
    )


def test_defaults() -> None:
    plan = plan_from_dict(minimal())
    assert plan.voice == (VoiceRate("1", "outbound", 600_000, 0, Increments(60, 60)),)
    assert (plan.sms_out_micros, plan.sms_in_micros, plan.ring_through_micros) == (0, 0, 0)


def test_micros_fields_accepted() -> None:
    plan = plan_from_dict(
        minimal(
            voice=[
                {
                    "prefix": "44",
                    "direction": "outbound",
                    "per_minute_micros": 900_000,
                    "connect_fee_micros": 50_000,
                    "increments": "1/1",
                }
            ],
            sms={"outbound_per_segment_micros": 7_900, "inbound_per_segment_micros": 0},
            ring_through_attempt_micros=10_000,
        )
    )
    assert plan.voice == (VoiceRate("44", "outbound", 900_000, 50_000, Increments(1, 1)),)
    assert (plan.sms_out_micros, plan.sms_in_micros, plan.ring_through_micros) == (7_900, 0, 10_000)


def test_yaml_float_money_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", PLAN_YAML.replace('per_minute: "0.60"', "per_minute: 0.60"))
    with pytest.raises(PlanError, match="float") as info:
        load_plans(path)
    message = str(info.value)
    assert "'std-usd'" in message
    assert "voice[0].per_minute" in message
    assert "per_minute_micros" in message  # tells the author the way out
    assert info.value.plan_id == "std-usd"
    assert info.value.field == "voice[0].per_minute"


@pytest.mark.parametrize(
    ("doc", "field", "problem"),
    [
        (minimal(id=None), "id", "missing"),
        (minimal(id=""), "id", "missing"),
        (minimal(id="has space"), "id", "letters"),
        ({"currency": "USD", "voice": []}, "id", "missing"),
        ({"id": "p1", "voice": []}, "currency", "missing"),
        (minimal(currency="usd"), "currency", "3 uppercase"),
        (minimal(currency="US"), "currency", "3 uppercase"),
        (minimal(currency="USDD"), "currency", "3 uppercase"),
        (minimal(currency=840), "currency", "3 uppercase"),
        ({"id": "p1", "currency": "USD"}, "voice", "missing"),
        (minimal(voice={"prefix": "1"}), "voice", "list"),
        (minimal(voice=["1"]), "voice[0]", "mapping"),
        (minimal(sms=["0.01"]), "sms", "mapping"),
        (minimal(sms={"outbound": "0.01"}), "sms", "unknown"),
        (minimal(colour="red"), "p1", "unknown field(s) 'colour'"),
        (voice(per_minute=0.6), "voice[0].per_minute", "float"),
        (voice(per_minute=1), "voice[0].per_minute", "quoted decimal"),
        (voice(per_minute=True), "voice[0].per_minute", "quoted decimal"),
        (voice(per_minute="-0.10"), "voice[0].per_minute", "negative"),
        (voice(per_minute="0.0000001"), "voice[0].per_minute", "6 decimal"),
        (voice(per_minute="1e3"), "voice[0].per_minute", "decimal"),
        (voice(per_minute="0.60", per_minute_micros=600_000), "voice[0].per_minute", "not both"),
        (voice(per_minute_micros=600_000.0), "voice[0].per_minute_micros", "integer"),
        (voice(per_minute_micros="600000"), "voice[0].per_minute_micros", "integer"),
        (voice(per_minute_micros=-1), "voice[0].per_minute_micros", "negative"),
        (voice(connect_fee=0.05), "voice[0].connect_fee", "float"),
        (voice(increments="0/6"), "voice[0].increments", ">= 1"),
        (voice(increments="60/0"), "voice[0].increments", ">= 1"),
        (voice(increments="60"), "voice[0].increments", "60/6"),
        (voice(increments=60), "voice[0].increments", "60/6"),
        (voice(direction="outgoing"), "voice[0].direction", "one of"),
        (voice(direction=None), "voice[0].direction", "one of"),
        (voice(prefix="+1"), "voice[0].prefix", "digits"),
        (voice(prefix=44), "voice[0].prefix", "quoted"),
        (voice(prefix="4a"), "voice[0].prefix", "digits"),
        (voice(per_minut="0.60"), "voice[0]", "unknown field(s) 'per_minut'"),
        (
            minimal(voice=[{"prefix": "1", "direction": "outbound"}]),
            "voice[0].per_minute",
            "missing",
        ),
        (minimal(sms={"outbound_per_segment": 0.0079}), "sms.outbound_per_segment", "float"),
        (minimal(ring_through_attempt=0.01), "ring_through_attempt", "float"),
        (
            minimal(
                voice=[
                    {"prefix": "1", "direction": "outbound", "per_minute": "0.60"},
                    {"prefix": "1", "direction": "outbound", "per_minute": "0.50"},
                ]
            ),
            "voice[1]",
            "duplicate outbound rate for prefix '1'",
        ),
    ],
)
def test_plan_errors_name_plan_and_field(doc: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(PlanError) as info:
        plan_from_dict(doc)
    message = str(info.value)
    assert field in message
    assert problem in message
    if isinstance(doc.get("id"), str) and doc["id"]:
        assert repr(doc["id"]) in message


def test_plan_error_is_a_value_error() -> None:
    assert issubclass(PlanError, ValueError)


def test_plan_error_survives_pickling() -> None:
    error = PlanError("p1", "currency", "bad", source="plans.yaml")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "plans.yaml: plan 'p1': currency: bad"
    assert (copy.plan_id, copy.field, copy.problem, copy.source) == (
        "p1",
        "currency",
        "bad",
        "plans.yaml",
    )


def test_plan_must_be_a_mapping() -> None:
    with pytest.raises(PlanError, match="mapping"):
        plan_from_dict(["id", "p1"])  # type: ignore[arg-type]


def test_json_file(tmp_path: Path) -> None:
    doc = minimal(sms={"outbound_per_segment_micros": 7_900})
    plans = load_plans(write(tmp_path / "p.json", json.dumps(doc)))
    assert plans["p1"].sms_out_micros == 7_900
    assert plans["p1"].voice[0].per_minute_micros == 600_000


def test_json_float_money_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", json.dumps(voice(per_minute=0.6)))
    with pytest.raises(PlanError, match=r"p\.json.*'p1'.*voice\[0\]\.per_minute.*float"):
        load_plans(path)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("p.json", '{"id": "p1", "id": "p2"}', "repeated key 'id'"),
        (
            "p.json",
            '{"id": "p1", "currency": "USD", "voice": [], "ring_through_attempt": NaN}',
            "NaN",
        ),
        ("p.json", "{not json", "invalid JSON"),
        ("p.yaml", PLAN_YAML + "currency: EUR\n", "repeated key 'currency'"),
        ("p.yaml", "id: [unclosed\n", "invalid YAML"),
        ("p.yaml", "", "expected a plan"),
        ("p.yaml", "[]", "expected a plan"),
        ("p.yaml", "just a string\n", "expected a plan"),
        ("p.yaml", "plans: []\nextra: 1\n", "nothing else"),
        ("p.txt", PLAN_YAML, "unsupported plan file type"),
    ],
)
def test_bad_files_refused(tmp_path: Path, name: str, text: str, problem: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(PlanError) as info:
        load_plans(path)
    assert problem in str(info.value)
    assert name in str(info.value)


def test_plan_without_id_is_located_by_position(tmp_path: Path) -> None:
    doc = {"plans": [minimal(), minimal(id=None)]}
    with pytest.raises(PlanError, match=r"plan '#2': id"):
        load_plans(write(tmp_path / "p.json", json.dumps(doc)))


def test_directory_load(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", PLAN_YAML)
    write(tmp_path / "b.json", json.dumps({"plans": [minimal(id="b1"), minimal(id="b2")]}))
    write(tmp_path / "c.yml", "- " + json.dumps(minimal(id="c1")) + "\n")
    write(tmp_path / "notes.txt", "not a plan")
    write(tmp_path / ".hidden.yaml", "garbage: [")
    (tmp_path / "sub.yaml").mkdir()
    plans = load_plans(tmp_path)
    assert sorted(plans) == ["b1", "b2", "c1", "std-usd"]
    assert plans["c1"].voice[0].per_minute_micros == 600_000


def test_duplicate_id_across_files_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", PLAN_YAML)
    write(tmp_path / "b.yaml", PLAN_YAML)
    with pytest.raises(PlanError, match=r"b\.yaml: plan 'std-usd': id: duplicate plan id"):
        load_plans(tmp_path)


def test_duplicate_id_in_one_file_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", json.dumps([minimal(), minimal()]))
    with pytest.raises(PlanError, match="duplicate plan id"):
        load_plans(path)


def test_empty_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"no \.yaml"):
        load_plans(tmp_path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_plans(tmp_path / "absent.yaml")


# --- the sample plans shipped for the demo ------------------------------------------------


def test_sample_plans_load() -> None:
    plans = load_plans(SAMPLE_PLANS)
    assert sorted(plans) == ["local-uah", "pro-usd", "std-usd"]
    assert plans["local-uah"].currency == "UAH"
    assert plans["std-usd"].sms_out_micros == 7_900
    assert plans["std-usd"].ring_through_micros == 10_000
    assert plans["pro-usd"].ring_through_micros == 5_000
    assert all(r.increments == Increments(1, 1) for r in plans["pro-usd"].voice)


@pytest.mark.parametrize(
    ("plan_id", "direction", "number", "duration_ms", "prefix", "amount"),
    [
        ("std-usd", "outbound", "+1 415 555 0100", 90_000, "1", 900_000),  # 90 s at 0.60, 1/1
        ("std-usd", "outbound", "+44 20 7946 0000", 61_000, "44", 1_040_000),  # 66 s at 0.90 + 0.05
        ("std-usd", "outbound", "+33 1 23 45 67 89", 61_000, "", 2_400_000),  # 120 s at 1.20
        ("std-usd", "inbound", "+1 800 555 0100", 1, "1800", 50_000),  # 60 s at 0.05
        ("std-usd", "inbound", "+1 415 555 0100", 600_000, "", 0),  # free inbound
        ("std-usd", "forwarded", "+1 415 555 0100", 30_500, "", 155_000),  # 31 s at 0.30
        ("std-usd", "outbound", "+44 20", 0, "44", 50_000),  # answered, 0 s: connect fee
        ("pro-usd", "outbound", "+44 20", 1, "44", 31_667),  # 700000/60 -> 11667 + 20000
        ("local-uah", "outbound", "+380 44 123 4567", 60_001, "380", 2_400_000),  # 120 s at 1.20
        ("local-uah", "outbound", "+48 22 123", 1_000, "", 6_000_000),  # 60 s at 6.00
    ],
)
def test_sample_plan_prices(
    plan_id: str, direction: str, number: str, duration_ms: int, prefix: str, amount: int
) -> None:
    plan = load_plans(SAMPLE_PLANS)[plan_id]
    found = plan.voice_rate(direction, number)
    assert found is not None
    assert found.prefix == prefix
    assert call_charge(duration_ms, found).amount_micros == amount


def test_sample_local_plan_sms_and_unrated_forwarding() -> None:
    plan = load_plans(SAMPLE_PLANS)["local-uah"]
    assert sms_charge(plan, outbound=True, segments=2) == 3_000_000
    assert sms_charge(plan, outbound=False, segments=1) == 0
    assert plan.voice_rate("forwarded", "+380 44 123 4567") is None
