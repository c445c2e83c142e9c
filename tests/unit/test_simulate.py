"""The switch simulator: determinism, valid traffic, and bad traffic in the configured doses."""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest

from charger_tools.simulate import (
    SimConfig,
    SimRecord,
    Switch,
    account_records,
    format_time,
    sample_accounts,
    stats,
)
from charger_tools.simulate import produce as produce_module
from charger_topics import names
from charger_topics.records import COMMON, RECORDS, Field

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# --- a strict checker of the contract, written against charger_topics.records -------------------


def parse_time(value: str) -> int:
    stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def field_errors(name: str, spec: Field, value: Any) -> list[str]:
    bad = [f"{name}: {value!r} is not a valid {spec.kind}"]
    if spec.kind == "string":
        return [] if isinstance(value, str) and len(value) <= spec.max_length else bad
    if spec.kind == "time":
        if not isinstance(value, str) or not TIME_RE.match(value):
            return bad
        try:
            parse_time(value)
        except ValueError:
            return bad
        return []
    if spec.kind == "integer":
        if type(value) is not int:
            return bad
        if spec.minimum is not None and value < spec.minimum:
            return bad
        if spec.maximum is not None and value > spec.maximum:
            return bad
        return []
    if spec.kind == "boolean":
        return [] if isinstance(value, bool) else bad
    if spec.kind == "enum":
        return [] if value in spec.values else bad
    if not isinstance(value, dict):
        return bad
    errors: list[str] = []
    for member, sub in spec.fields.items():
        if member in value:
            errors += field_errors(f"{name}.{member}", sub, value[member])
        elif member not in spec.optional:
            errors.append(f"{name}.{member}: missing")
    return errors


def check(record: SimRecord, accounts: set[str]) -> list[str]:
    """Every way `record` breaks the contract; empty when it is a valid record."""
    try:
        doc = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return ["invalid json"]
    if not isinstance(doc, dict):
        return ["not an object"]
    spec = RECORDS.get(str(doc.get("type")))
    if spec is None:
        return ["unknown type"]
    errors = [] if spec.topic == record.topic else ["wrong topic"]
    for name, f in {**COMMON, **spec.required}.items():
        if name not in doc:
            errors.append(f"{name}: missing")
        else:
            errors += field_errors(name, f, doc[name])
    for name, f in spec.optional.items():
        if name in doc:
            errors += field_errors(name, f, doc[name])
    if not errors:
        if doc["account"] not in accounts:
            errors.append("unknown account")
        elif record.key != doc["account"].encode():
            errors.append("key is not the account")
    return errors


# --- helpers -------------------------------------------------------------------------------


def known_accounts(cfg: SimConfig) -> set[str]:
    return {d["account"] for d in sample_accounts(cfg)}


def docs(records: Sequence[SimRecord], kind: str = "good") -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.kind == kind]


def run(cfg: SimConfig, seconds: float, step_ms: int = 1000) -> list[SimRecord]:
    switch = Switch(cfg)
    out: list[SimRecord] = []
    end = cfg.start_ms + int(seconds * 1000)
    for at in range(cfg.start_ms, end + step_ms, step_ms):
        out += switch.advance(min(at, end))
    return out


def at_least(cfg: SimConfig, count: int) -> list[SimRecord]:
    switch = Switch(cfg)
    out: list[SimRecord] = []
    at = cfg.start_ms
    while len(out) < count:
        at += 10_000
        out += switch.advance(at)
    return out


NOISY = SimConfig(duplicate_fraction=0.04, malformed_fraction=0.05, conflict_fraction=0.02)


@pytest.fixture(scope="module")
def noisy() -> list[SimRecord]:
    return at_least(NOISY, 10_000)


# --- determinism and order -----------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_steps() -> None:
    cfg = SimConfig(seed=11)
    one_step = Switch(cfg).advance(cfg.start_ms + 300_000)
    small_steps = run(cfg, 300, step_ms=37)
    assert one_step == small_steps
    assert len(one_step) > 1000
    assert sample_accounts(cfg) == sample_accounts(SimConfig(seed=11))
    other = Switch(SimConfig(seed=12)).advance(cfg.start_ms + 300_000)
    assert [r.value for r in other] != [r.value for r in one_step]


def test_injectable_start_and_seed() -> None:
    cfg = SimConfig()
    start = 1_700_000_000_123
    records = Switch(cfg, start_ms=start, seed=99).advance(start + 60_000)
    times = [parse_time(d["time"]) for d in docs(records)]
    assert times and min(times) >= start and max(times) <= start + 60_000
    assert all(d["id"].startswith("ev-99-") for d in docs(records))


def test_time_format() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1_795_000_000_123).endswith(".123Z")
    assert parse_time(format_time(1_795_000_000_007)) == 1_795_000_000_007


def test_good_records_are_time_ordered_and_within_the_step(noisy: list[SimRecord]) -> None:
    times = [parse_time(d["time"]) for d in docs(noisy)]
    assert times == sorted(times)
    switch = Switch(NOISY)
    first = switch.advance(NOISY.start_ms + 5_000)
    assert all(parse_time(d["time"]) <= NOISY.start_ms + 5_000 for d in docs(first))
    with pytest.raises(ValueError):
        switch.advance(NOISY.start_ms)


# --- valid traffic -------------------------------------------------------------------------


def test_good_and_conflicting_records_pass_the_strict_check(noisy: list[SimRecord]) -> None:
    accounts = known_accounts(NOISY)
    for record in noisy:
        if record.kind in ("good", "duplicate", "conflict"):
            assert check(record, accounts) == [], record
            assert record.topic == names.TELEPHONY_EVENTS


def test_every_good_id_and_call_id_is_unique(noisy: list[SimRecord]) -> None:
    good = docs(noisy)
    assert len({d["id"] for d in good}) == len(good)
    started = [d["call_id"] for d in good if d["type"] == "call.started"]
    attempts = [d["call_id"] for d in good if d["type"] == "call.attempt"]
    assert len(set(started + attempts)) == len(started) + len(attempts)
    malformed_ids: set[Any] = set()
    for record in noisy:
        if record.kind == "malformed":
            try:
                doc = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                malformed_ids.add(doc.get("id"))
    assert not malformed_ids & {d["id"] for d in good}


def test_every_call_started_has_its_call_ended_later() -> None:
    cfg = SimConfig(call_rate_per_s=10)
    switch = Switch(cfg)
    records = switch.advance(cfg.start_ms + 120_000) + switch.finish()
    good = [(i, orjson.loads(r.value)) for i, r in enumerate(records) if r.kind == "good"]
    ended = {d["call_id"]: (i, d) for i, d in good if d["type"] == "call.ended"}
    started = [(i, d) for i, d in good if d["type"] == "call.started"]
    assert len(started) > 1000 and len(ended) == len(started)
    for i, start in started:
        j, end = ended[start["call_id"]]
        assert j > i
        assert end["account"] == start["account"]
        assert parse_time(end["time"]) == parse_time(start["time"]) + end["duration_ms"]
        assert (end["direction"], end["from"], end["to"]) == (
            start["direction"],
            start["from"],
            start["to"],
        )


def test_sample_accounts() -> None:
    cfg = SimConfig()
    records = sample_accounts(cfg)
    accounts = known_accounts(cfg)
    for r in account_records(cfg):
        assert r.topic == names.BILLING_ACCOUNTS
        assert check(r, accounts) == []
    upserts = [d for d in records if d["type"] == "account.upserted"]
    credits = {d["account"]: d["amount_micros"] for d in records if d["type"] == "balance.credited"}
    assert [d["account"] for d in upserts] == [f"acct-{n:04d}" for n in range(1, 51)]
    assert set(credits) == accounts
    plans = {"std-usd": "USD", "pro-usd": "USD", "local-uah": "UAH"}
    assert {d["rate_plan"] for d in upserts} == set(plans)
    for d in upserts:
        assert plans[d["rate_plan"]] == d["currency"]
        assert d["credit_limit_micros"] in (0, 5_000_000)
        assert d["notify_email"].endswith("@example.com")
    usd = [credits[d["account"]] for d in upserts if d["currency"] == "USD"]
    assert all(type(a) is int for a in credits.values())
    assert sum(5_000_000 <= a <= 200_000_000 for a in usd) >= len(usd) - cfg.small_accounts
    assert sum(a < 1_000_000 for a in usd) >= 1  # a few cents: suspended in a short demo
    recharge = [d["auto_recharge"] for d in upserts if d.get("auto_recharge", {}).get("enabled")]
    assert 15 <= len(recharge) <= 35
    assert all(a["threshold_micros"] >= 10_000_000 for a in recharge)
    assert all(a["amount_micros"] > 50_000_000 for a in recharge)
    assert sum(d["credit_limit_micros"] == 0 for d in upserts) > 35


def test_destinations_directions_and_segments(noisy: list[SimRecord]) -> None:
    good = docs(noisy)
    calls = [d for d in good if d["type"] == "call.started"]
    directions = Counter(d["direction"] for d in calls)
    assert 0.6 < directions["outbound"] / len(calls) < 0.8
    assert directions["inbound"] > 0 and directions["forwarded"] > 0
    dialled = [d["to"] for d in calls if d["direction"] == "outbound"]
    for prefix in ("+1", "+44", "+380", "+1800"):
        assert any(to.startswith(prefix) for to in dialled), prefix
    segments = Counter(d.get("segments", 1) for d in good if d["type"].startswith("sms."))
    assert set(segments) <= {1, 2, 3, 4}
    assert segments[1] > 0.7 * sum(segments.values())
    assert any(d["type"] == "sms.received" for d in good)
    assert any(d["type"] == "call.attempt" for d in good)


def test_sms_bursts_from_one_account_within_a_second() -> None:
    cfg = SimConfig(sms_burst_fraction=0.2, sms_burst_size=30, call_rate_per_s=0)
    sent = [d for d in docs(run(cfg, 60)) if d["type"] == "sms.sent"]
    per_second = Counter((d["account"], parse_time(d["time"]) // 1000) for d in sent)
    # A burst spans at most two whole seconds, so one of them holds half of it.
    assert max(per_second.values()) >= 15


# --- timing and durations ------------------------------------------------------------------


def test_call_arrivals_are_poisson() -> None:
    cfg = SimConfig(call_rate_per_s=5.0)
    calls = [d for d in docs(run(cfg, 2400, step_ms=60_000)) if d["type"] == "call.started"]
    times = [parse_time(d["time"]) for d in calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) > 10_000
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1000 / cfg.call_rate_per_s, rel=0.05)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, abs=0.1)  # exponential


def test_durations_are_long_tailed_and_never_negative() -> None:
    cfg = SimConfig(call_rate_per_s=10, sms_rate_per_s=0, ring_through_rate_per_s=0)
    switch = Switch(cfg)
    records = switch.advance(cfg.start_ms + 600_000) + switch.finish()  # every call ends
    durations = sorted(d["duration_ms"] for d in docs(records) if d["type"] == "call.ended")
    assert len(durations) > 5000
    assert durations[0] >= 0
    assert durations[-1] <= cfg.max_call_s * 1000
    median = durations[len(durations) // 2]
    p99 = durations[int(len(durations) * 0.99)]
    assert p99 > 8 * median
    assert statistics.fmean(durations) == pytest.approx(cfg.mean_call_s * 1000, rel=0.15)


# --- bad traffic ---------------------------------------------------------------------------


def test_fractions_of_bad_records(noisy: list[SimRecord]) -> None:
    counts = stats(noisy)
    total = len(noisy)
    assert total >= 10_000
    assert sum(counts[k] for k in ("good", "duplicate", "malformed", "conflict")) == total
    assert counts["malformed"] / total == pytest.approx(NOISY.malformed_fraction, abs=0.01)
    assert counts["duplicate"] / total == pytest.approx(NOISY.duplicate_fraction, abs=0.01)
    assert counts["conflict"] / total == pytest.approx(NOISY.conflict_fraction, abs=0.008)


def test_malformed_records_all_fail_the_check_in_many_ways(noisy: list[SimRecord]) -> None:
    accounts = known_accounts(NOISY)
    reasons: Counter[str] = Counter()
    for record in noisy:
        if record.kind == "malformed":
            errors = check(record, accounts)
            assert errors, record
            reasons[errors[0].split(":")[0]] += 1
    for reason in ("invalid json", "not an object", "unknown type", "unknown account", "time"):
        assert reasons[reason] > 0, reasons
    assert reasons["duration_ms"] > 0 and reasons["id"] + reasons["call_id"] > 0
    values = [r.value for r in noisy if r.kind == "malformed"]
    assert any(b'"duration_ms":-' in v for v in values)
    assert any(re.search(rb'"duration_ms":"\d+"', v) for v in values)


def test_duplicates_are_byte_identical_resends(noisy: list[SimRecord]) -> None:
    seen: set[tuple[str, bytes | None, bytes]] = set()
    right_away = later = 0
    previous: SimRecord | None = None
    for record in noisy:
        if record.kind == "duplicate":
            assert (record.topic, record.key, record.value) in seen
            if previous is not None and previous.value == record.value:
                right_away += 1
            else:
                later += 1
        elif record.kind == "good":
            seen.add((record.topic, record.key, record.value))
        previous = record
    assert right_away > 10 and later > 10


def test_conflicts_reuse_an_earlier_id_with_another_payload(noisy: list[SimRecord]) -> None:
    earlier: dict[str, bytes] = {}
    conflicts = 0
    for record in noisy:
        if record.kind == "good":
            earlier[orjson.loads(record.value)["id"]] = record.value
        elif record.kind == "conflict":
            conflicts += 1
            reused = orjson.loads(record.value)["id"]
            assert reused in earlier
            assert earlier[reused] != record.value
    assert conflicts > 50


def test_stats_counts_kinds_and_types() -> None:
    records = [
        SimRecord("t", b"a", b'{"type":"call.started"}', "good"),
        SimRecord("t", b"a", b'{"type":"call.started"}', "duplicate"),
        SimRecord("t", b"a", b"\xff", "malformed"),
    ]
    counts = stats(records)
    assert counts["good"] == 1 and counts["good:call.started"] == 1
    assert counts["duplicate:call.started"] == 1 and counts["malformed:-"] == 1


def test_a_silent_switch_sends_nothing() -> None:
    cfg = SimConfig(call_rate_per_s=0, sms_rate_per_s=0, ring_through_rate_per_s=0)
    switch = Switch(cfg)
    assert switch.advance(cfg.start_ms + 3_600_000) == []
    assert switch.finish() == []


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SimConfig(malformed_fraction=0.3, duplicate_fraction=0.3)
    with pytest.raises(ValueError):
        SimConfig(call_rate_per_s=-1)


# --- the producer loop, without a broker ---------------------------------------------------


class FakeProducer:
    sent: ClassVar[list[tuple[str, bytes, bytes | None]]] = []

    def __init__(self, **config: Any) -> None:
        assert config["acks"] == "all" and config["enable_idempotence"] is False

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.sent.append((topic, value, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_run_switch_plays_scaled_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(produce_module, "AIOKafkaProducer", FakeProducer)
    FakeProducer.sent = []
    ticks = iter(i * 0.25 for i in range(1000))
    batches: list[int] = []
    cfg = SimConfig()
    totals = await produce_module.run_switch(
        "localhost:9092",
        cfg,
        seconds=2.0,
        speed=30.0,
        clock=lambda: next(ticks),
        on_batch=lambda batch: batches.append(len(batch)),
        with_accounts=True,
    )
    expected = account_records(cfg) + Switch(cfg).advance(cfg.start_ms + 60_000)
    assert [(r.topic, r.value, r.key) for r in expected] == FakeProducer.sent
    assert totals == stats(expected)
    assert sum(batches) == len(expected) - len(account_records(cfg))
    assert await produce_module.produce("localhost:9092", expected[:3]) == 3
