"""Metrics: Prometheus naming, no ids in labels, and what the relay and sampler record."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from charger.events.timefmt import parse_time_ms
from charger.metrics import (
    API_BACKENDS,
    SINK_DEPENDENCIES,
    SINK_RESULTS,
    ApiMetrics,
    BatchHistogram,
    Metrics,
    ProcessMetrics,
    SinkMetrics,
)
from charger.protocol import outputs as out
from charger.protocol.keys import Keys
from charger.protocol.outputs import decode_entry, encode_entry
from charger.published import Published
from charger.sampler import Sampler
from charger_topics import names

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


# The metrics of the ledger sink and the API, by the names docs, dashboards and alerts use,
# and the label whose known values start at 0.
OTHER_PROCESSES = [
    (
        SinkMetrics,
        {
            "charger_sink_records": "counter",
            "charger_sink_batch_commit_seconds": "histogram",
            "charger_sink_batch_size": "histogram",
            "charger_sink_lag": "gauge",
            "charger_sink_assigned_partitions": "gauge",
            "charger_sink_last_commit_timestamp_seconds": "gauge",
            "charger_sink_errors": "counter",
        },
        {
            "charger_sink_records_total": ("result", SINK_RESULTS),
            "charger_sink_errors_total": ("dependency", SINK_DEPENDENCIES),
        },
    ),
    (
        ApiMetrics,
        {
            "charger_api_request_seconds": "histogram",
            "charger_api_backend_errors": "counter",
            "charger_api_rate_plans": "gauge",
        },
        {"charger_api_backend_errors_total": ("backend", API_BACKENDS)},
    ),
]


@pytest.mark.parametrize(("kind", "own", "from_zero"), OTHER_PROCESSES)
def test_the_sink_and_the_api_export_their_metrics_and_their_build(
    kind: type[ProcessMetrics],
    own: dict[str, str],
    from_zero: dict[str, tuple[str, tuple[str, ...]]],
) -> None:
    m = kind(CollectorRegistry())
    families = {f.name: f for f in m.registry.collect()}
    charger = {name: f.type for name, f in families.items() if name.startswith("charger_")}
    assert charger == {**own, "charger_build_info": "gauge"}
    info = families["charger_build_info"].samples
    assert len(info) == 1 and info[0].value == 1 and info[0].labels["version"]
    assert {"python_info", "python_gc_objects_collected"} <= set(families)
    for sample, (label, values) in from_zero.items():
        for v in values:
            assert m.registry.get_sample_value(sample, {label: v}) == 0, (sample, v)
    for f in families.values():
        for s in f.samples:
            assert not (set(s.labels) & ID_LABELS), s


def ledger_entry(kind: str, amount: int, currency: str = "USD") -> out.LedgerEntry:
    return out.LedgerEntry(b"a1", b"{}", 100, kind.encode(), currency.encode(), amount, T.encode())


def test_the_relay_report_counts_money_latency_cutoffs_and_recharges() -> None:
    m = Metrics(CollectorRegistry())
    now = T_S + 2.5
    outputs: list[out.Output] = [
        ledger_entry("sms_out", -7_900),
        ledger_entry("sms_out", -15_800),
        ledger_entry("topup", 5_000_000),
        ledger_entry("recharge", 20_000_000, "UAH"),
        # a cutoff due 1.5 s before it was published
        out.CallCut(b"a1", b"call-1", int((now - 1.5) * 1000), 0, b""),
        out.FloorCrossed(True, b"a1", b"ev:e1:", -5, 0, T.encode(), None, -5, b""),
        out.FloorCrossed(False, b"a1", b"ev:e2:", 5, 0, T.encode(), None, 5, None),
        out.RechargeRequested(b"a1", b"rq-a1-1", 1, 0, 0, 1, b"USD", 0),
        out.RechargeTimedOut(b"a1", b"rq-a1-1", 0),
        out.Refused(b"a1", b"{}", b"unknown_type", b"nope", b"t", 0, 1, b"bad-1"),
    ]
    # through the wire, as the relay reads them
    Published(m)(decode_entry(encode_entry(outputs)), now)

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


def test_a_broken_output_never_stops_the_relay() -> None:
    m = Metrics(CollectorRegistry())
    broken = out.LedgerEntry(b"a1", b"{}", 0, b"sms_out", b"USD", -1, b"not a time")
    fine = out.CallCut(b"a1", b"c1", int(T_S * 1000), 0, b"")
    Published(m)([broken, fine], T_S)
    assert value(m, "charger_cutoffs_total") == 1
    assert value(m, "charger_ledger_entries_total", kind="sms_out", currency="USD") == 0


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
    st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=50),  # latencies, seconds
    st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=20),
)
def test_a_batch_histogram_exports_what_a_histogram_observing_one_by_one_does(
    values: list[float], before: list[float]
) -> None:
    buckets = (0.01, 0.5, 1.0, 2.5, 60.0)
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", buckets=buckets, registry=one)
    h2 = BatchHistogram("h", "h", buckets)
    many.register(h2)
    for v in before:  # a running sum that is not zero
        h1.observe(v)
    h2.observe_all(before)
    for v in values:
        h1.observe(v)
    h2.observe_all(values)
    s1 = [(s.name, s.labels, s.value) for m in one.collect() for s in m.samples]
    s2 = [(s.name, s.labels, s.value) for m in many.collect() for s in m.samples]
    s1 = [s for s in s1 if s[0] != "h_created"]
    assert [s[:2] for s in s1] == [s[:2] for s in s2]
    for (_, _, v1), (_, _, v2) in zip(s1, s2, strict=True):
        assert v1 == pytest.approx(v2, rel=1e-9, abs=1e-6)
