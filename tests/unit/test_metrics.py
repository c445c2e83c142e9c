"""Metrics: Prometheus naming, no ids in labels, and what the relay and sampler record."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from charger.charging.ledger import ledger_head
from charger.events.timefmt import parse_time_ms
from charger.kafka.relay import render
from charger.metrics import Metrics, Sampler, observe_all
from charger.store.keys import Keys
from topics import names

T = "2026-11-22T10:00:00.000Z"
T_S = parse_time_ms(T) / 1000
ID_LABELS = {"account", "call_id", "event_id", "id", "number", "from", "to", "request_id"}


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_names_follow_the_conventions_and_labels_carry_no_ids() -> None:
    m = Metrics(CollectorRegistry())
    families = [f for f in m.registry.collect() if f.name.startswith("charger_")]
    assert len(families) >= 25
    for f in families:
        for s in f.samples:
            if f.type == "counter":
                assert s.name.endswith(("_total", "_created")), s.name
            assert not (set(s.labels) & ID_LABELS), s
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "_size")), f.name
    # Known label values exist before the first occurrence, so alerts have series.
    assert m.registry.get_sample_value("charger_dlq_total", {"reason": "conflict"}) == 0
    assert m.registry.get_sample_value("charger_recharge_results_total", {"status": "failed"}) == 0
    info = next(f for f in families if f.name == "charger_build_info")
    assert info.samples[0].value == 1 and info.samples[0].labels["version"]


def ledger_entry(kind: str, amount: int, currency: str = "USD") -> dict[bytes, bytes]:
    head = ledger_head(
        entry=f"ev:e1:{kind}",
        account="a1",
        time=T,
        kind=kind,
        amount_micros=amount,
        currency=currency,
        source_event_id="e1",
        source_topic=names.TELEPHONY_EVENTS,
        quantity=1,
        unit="message",
        unit_price_micros=abs(amount),
    )
    return {b"o": b"L", b"k": b"a1", b"v": head, b"b": b"100"}


def test_the_relay_report_counts_money_latency_cutoffs_and_recharges() -> None:
    m = Metrics(CollectorRegistry())
    now = T_S + 2.5
    entries: list[dict[bytes, bytes]] = [
        ledger_entry("sms_out", -7_900),
        ledger_entry("sms_out", -15_800),
        ledger_entry("topup", 5_000_000),
        ledger_entry("recharge", 20_000_000, "UAH"),
        # a cutoff due 1.5 s before it was published
        {
            b"o": b"C",
            b"k": b"a1",
            b"c": b"call-1",
            b"x": str(int((now - 1.5) * 1000)).encode(),
            b"m": b"0",
            b"e": b"",
        },
        {b"o": b"S", b"k": b"a1", b"b": b"-5", b"c": b"ev:e1:", b"t": T.encode(), b"e": b""},
        {b"o": b"R", b"k": b"a1", b"b": b"5", b"c": b"ev:e2:", b"t": T.encode()},
        {
            b"o": b"Q",
            b"k": b"a1",
            b"i": b"rq-a1-1",
            b"a": b"1",
            b"b": b"0",
            b"h": b"1",
            b"u": b"USD",
            b"m": b"0",
        },
        {b"o": b"T", b"k": b"a1", b"i": b"rq-a1-1", b"m": b"0"},
        {
            b"o": b"D",
            b"k": b"a1",
            b"v": orjson.dumps({"id": "bad-1", "type": "nope"}),
            b"h": orjson.dumps({names.DLQ_HEADER_ERROR: "unknown_type"}),
        },
    ]
    m.relayed([(f, render(f)) for f in entries], now)

    assert value(m, "charger_ledger_entries_total", kind="sms_out", currency="USD") == 2
    debit = {"kind": "sms_out", "currency": "USD", "direction": "debit"}
    assert value(m, "charger_ledger_amount_total", **debit) == pytest.approx(0.0237)
    credit = {"kind": "topup", "currency": "USD", "direction": "credit"}
    assert value(m, "charger_ledger_amount_total", **credit) == pytest.approx(5.0)
    assert value(m, "charger_event_to_ledger_seconds_count") == 4
    assert value(m, "charger_event_to_ledger_seconds_sum") == pytest.approx(4 * 2.5)
    assert value(m, "charger_cutoffs_total") == 1
    assert value(m, "charger_cutoff_lateness_seconds_sum") == pytest.approx(1.5, abs=0.01)
    assert value(m, "charger_account_suspensions_total") == 1
    assert value(m, "charger_account_restores_total") == 1
    assert value(m, "charger_recharge_requests_total") == 1
    assert value(m, "charger_recharge_results_total", status="timed_out") == 1
    assert value(m, "charger_recharge_results_total", status="succeeded") == 1


def test_a_broken_entry_never_stops_the_relay() -> None:
    m = Metrics(CollectorRegistry())
    m.relayed([({b"o": b"C", b"k": b"a1"}, [])], T_S)  # no cutoff instant
    assert value(m, "charger_cutoffs_total") == 1


class FakeConsumer:
    def __init__(self, high: dict[TopicPartition, int | None], pos: dict[TopicPartition, int]):
        self.high, self.pos = high, pos

    def assignment(self) -> set[TopicPartition]:
        return set(self.high)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]


async def test_lag_is_sampled_per_assigned_partition_and_replaced_on_rebalance() -> None:
    m = Metrics(CollectorRegistry())
    s = Sampler(m, redis=None, keys=Keys("t", 8))  # type: ignore[arg-type]
    ev0, ev1 = TopicPartition(names.TELEPHONY_EVENTS, 0), TopicPartition(names.TELEPHONY_EVENTS, 1)
    ac0 = TopicPartition(names.BILLING_ACCOUNTS, 0)
    await s.sample_lag(FakeConsumer({ev0: 120, ev1: 5, ac0: None}, {ev0: 20, ev1: 9, ac0: 0}))
    lag = {"topic": names.TELEPHONY_EVENTS}
    assert value(m, "charger_consumer_lag", **lag, partition="0") == 100
    assert value(m, "charger_consumer_lag", **lag, partition="1") == 0  # never negative
    assert m.registry.get_sample_value("charger_consumer_lag", {**lag, "partition": "2"}) is None
    assert value(m, "charger_assigned_partitions") == 3
    await s.sample_lag(FakeConsumer({ev1: 50}, {ev1: 40}))
    assert m.registry.get_sample_value("charger_consumer_lag", {**lag, "partition": "0"}) is None
    assert value(m, "charger_consumer_lag", **lag, partition="1") == 10


def test_polled_counts_records_by_topic() -> None:
    m = Metrics(CollectorRegistry())
    data: dict[Any, list[Any]] = {TopicPartition(names.TELEPHONY_EVENTS, 3): [1, 2, 3]}
    m.polled(data)
    m.polled({})
    assert value(m, "charger_records_consumed_total", topic=names.TELEPHONY_EVENTS) == 3
    assert m.polled_at > 0 and value(m, "charger_last_poll_timestamp_seconds") > 0


@given(
    st.lists(st.floats(allow_infinity=True, allow_nan=True, width=64), max_size=50),
    st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=20),
)
def test_observe_all_exports_what_observe_one_by_one_does(
    values: list[float], before: list[float]
) -> None:
    buckets = (0.01, 0.5, 1.0, 2.5, 60.0)
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", buckets=buckets, registry=one)
    h2 = Histogram("h", "h", buckets=buckets, registry=many)
    for v in before:  # a running sum that is not zero
        h1.observe(v)
        h2.observe(v)
    for v in values:
        h1.observe(v)
    observe_all(h2, values)
    s1 = [(s.name, s.labels, repr(s.value)) for m in one.collect() for s in m.samples]
    s2 = [(s.name, s.labels, repr(s.value)) for m in many.collect() for s in m.samples]
    assert [s for s in s1 if s[0] != "h_created"] == [s for s in s2 if s[0] != "h_created"]
