"""Prometheus metrics of the worker, on a registry the app owns (no global state).

Every metric charger exports is defined here. Names follow the Prometheus conventions:
prefix ``charger_``, base units (seconds; money in units of the account's currency, the
ledger's micro-units divided by 10^6), ``_total`` on counters, and no account, call or
number ids in labels. Three kinds of recording:

- the batch loop counts what it consumed and processed (``polled``, ``error``), and the
  loops their failures and backoff by dependency (``error``, ``backing_off``; the
  dependency ``Probe`` of `charger.deps` sets ``charger_dependency_up``);
- the relay reports every outbox entry the broker acknowledged (``relayed``): ledger
  entries and money moved, event-to-ledger latency, cutoffs and their lateness,
  suspensions, restores and recharges;
- a ``Sampler`` reads gauges every few seconds: consumer lag, outbox backlog, active
  calls and holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from bisect import bisect_left
from collections import Counter as Counter_
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from charger.deps import DEPENDENCIES, OTHER, REDIS, dependency_of
from charger.events.timefmt import parse_time_ms
from topics import names
from topics.reasons import ALL as DLQ_REASONS

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from charger.kafka.relay import Output
    from charger.store.keys import Keys

log = logging.getLogger("charger.relay")

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

MICROS = 1_000_000

RECHARGE_STATUSES = ("succeeded", "failed", "timed_out")
# Loops that retry a failed batch or tick (charger_batch_errors_total), and every stage
# that can fail on a dependency (the probe only asks whether it answers).
LOOP_STAGES = ("batch", "tick")
ERROR_STAGES = (*LOOP_STAGES, "sample", "probe")


def build_version() -> str:
    try:
        return metadata.version("charger")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric charger exports; names follow the Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # ---- the batch loop ----
        self.consumed = Counter(
            "charger_records_consumed",
            "Records fetched from the input topics, by topic.",
            ["topic"],
            registry=r,
        )
        self.events = Counter(
            "charger_events_total",
            "Records processed, by type and result.",
            ["type", "result"],
            registry=r,
        )
        self.dlq = Counter(
            "charger_dlq_total", "Records refused to the DLQ, by reason.", ["reason"], registry=r
        )
        self.outputs = Counter(
            "charger_outputs_total", "Records published, by kind.", ["kind"], registry=r
        )
        self.batch_size = Histogram(
            "charger_batch_size", "Records per fetched batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "charger_batch_processing_seconds",
            "Fetch-to-commit time of a batch.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.redis_seconds = Histogram(
            "charger_redis_script_seconds",
            "Time of the apply round trip.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "charger_batch_errors_total", "Batches retried after an error.", ["stage"], registry=r
        )
        self.redis_errors = Counter(
            "charger_redis_errors_total",
            "Redis commands or scripts that failed, by stage.",
            ["stage"],
            registry=r,
        )
        # ---- dependencies: Redis and the broker ----
        self.dependency_up = Gauge(
            "charger_dependency_up",
            "1 if the dependency answered the last probe (every second), else 0.",
            ["dependency"],
            registry=r,
        )
        self.dependency_errors = Counter(
            "charger_dependency_errors_total",
            "Failures by the dependency they came from (redis, kafka, other) and stage "
            "(batch, tick, sample, probe).",
            ["dependency", "stage"],
            registry=r,
        )
        self.retry_delay = Gauge(
            "charger_retry_delay_seconds",
            "The backoff a loop is waiting before its next attempt; 0 while it runs.",
            ["stage"],
            registry=r,
        )
        self.backoff_seconds = Counter(
            "charger_backoff_seconds_total",
            "Time the loops spent backing off after a failure, by the dependency that failed.",
            ["dependency"],
            registry=r,
        )
        self.ticked = Counter(
            "charger_sessions_ticked_total", "Due call sessions the ticker looked at.", registry=r
        )
        self.last_processed = Gauge(
            "charger_last_processed_timestamp_seconds",
            "When the last batch was committed.",
            registry=r,
        )
        self.last_poll = Gauge(
            "charger_last_poll_timestamp_seconds",
            "When the batch loop last fetched (with or without records).",
            registry=r,
        )
        # ---- what the relay published ----
        self.ledger_entries = Counter(
            "charger_ledger_entries",
            "Ledger entries published, by kind and currency.",
            ["kind", "currency"],
            registry=r,
        )
        self.ledger_amount = Counter(
            "charger_ledger_amount",
            "Money moved by published ledger entries, in currency units, by kind, currency "
            "and direction (debit: amount < 0, credit: amount > 0).",
            ["kind", "currency", "direction"],
            registry=r,
        )
        self.event_to_ledger = Histogram(
            "charger_event_to_ledger_seconds",
            "From the time of the causing event to the ledger entry acknowledged by the broker.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cutoffs = Counter(
            "charger_cutoffs", "call.cutoff commands published to the switch.", registry=r
        )
        self.cutoff_lateness = Histogram(
            "charger_cutoff_lateness_seconds",
            "How long after the instant the balance ran out a cutoff was published.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.suspensions = Counter(
            "charger_account_suspensions", "account.suspended commands published.", registry=r
        )
        self.restores = Counter(
            "charger_account_restores", "account.restored commands published.", registry=r
        )
        self.recharge_requests = Counter(
            "charger_recharge_requests", "Auto-recharge requests published.", registry=r
        )
        self.recharge_results = Counter(
            "charger_recharge_results",
            "Auto-recharge outcomes, by status (succeeded, failed, timed_out).",
            ["status"],
            registry=r,
        )
        # ---- sampled ----
        self.consumer_lag = Gauge(
            "charger_consumer_lag",
            "Records behind the partition's high watermark, per assigned input partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "charger_assigned_partitions",
            "Input partitions assigned to this worker.",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "charger_outbox_backlog",
            "Outbox entries not yet relayed, in the key slots this worker owns "
            "(an entry holds the outputs of one apply call).",
            registry=r,
        )
        self.active_calls = Gauge(
            "charger_active_calls",
            "Open call sessions in the key slots this worker owns.",
            registry=r,
        )
        self.holds = Gauge(
            "charger_holds",
            "Credit held by active calls, in currency units, by currency.",
            ["currency"],
            registry=r,
        )
        self.build_info = Gauge(
            "charger_build_info",
            "Always 1; the labels name the running build.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(build_version(), platform.python_version()).set(1)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        # Known label values start at 0, so rates and alerts have series before the
        # first occurrence.
        for reason in DLQ_REASONS:
            self.dlq.labels(reason)
        for status in RECHARGE_STATUSES:
            self.recharge_results.labels(status)
        for stage in LOOP_STAGES:
            self.errors.labels(stage)
            self.retry_delay.labels(stage)
        for stage in ERROR_STAGES:
            self.redis_errors.labels(stage)
            for dep in (*DEPENDENCIES, OTHER):
                self.dependency_errors.labels(dep, stage)
        for dep in DEPENDENCIES:
            self.dependency_up.labels(dep)
        for dep in (*DEPENDENCIES, OTHER):
            self.backoff_seconds.labels(dep)
        for topic in names.CO_PARTITIONED:
            self.consumed.labels(topic)
        self.polled_at = 0.0  # time.monotonic() of the last fetch; 0 before the first

    # ---- the batch loop ----
    def polled(self, data: Mapping[Any, Sequence[Any]]) -> None:
        """The batch loop fetched `data` (aiokafka `getmany`: partition -> records)."""
        self.polled_at = time.monotonic()
        self.last_poll.set(time.time())
        for tp, msgs in data.items():
            self.consumed.labels(tp.topic).inc(len(msgs))

    def looped(self) -> None:
        """The batch loop came back from backing off: alive, though not fetching."""
        self.polled_at = time.monotonic()

    def error(self, stage: str, exc: BaseException) -> None:
        """A batch, tick or sample failed with `exc` and will be retried."""
        if stage in LOOP_STAGES:
            self.errors.labels(stage).inc()
        dep = dependency_of(exc)
        if dep == REDIS:
            self.redis_errors.labels(stage).inc()
        self.dependency_errors.labels(dep, stage).inc()

    def backing_off(self, stage: str, dependency: str, delay: float) -> None:
        """A loop waits `delay` seconds after a failure of `dependency`."""
        self.retry_delay.labels(stage).set(delay)
        self.backoff_seconds.labels(dependency).inc(delay)

    # ---- the relay ----
    def relayed(
        self, entries: Iterable[tuple[Mapping[bytes, bytes], Sequence[Output]]], now: float
    ) -> None:
        """Outbox entries and their outputs, acknowledged by the broker at `now` (epoch s).

        Ledger counters are summed per relay pass and incremented once per label set: a
        labelled increment costs microseconds, and per entry it was a tenth of the
        worker's CPU.
        """
        tally = _LedgerTally()
        for f, outs in entries:
            try:
                self._relayed_one(f, outs, now, tally)
            except Exception:  # a metric must never stop the relay
                log.warning("could not record a relayed entry", exc_info=True)
        for (kind, currency), n in tally.entries.items():
            self.ledger_entries.labels(kind, currency).inc(n)
        for labels, amount in tally.amounts.items():
            self.ledger_amount.labels(*labels).inc(amount / MICROS)
        if tally.recharges:
            self.recharge_results.labels("succeeded").inc(tally.recharges)
        if tally.delays:
            observe_all(self.event_to_ledger, tally.delays)

    def _relayed_one(
        self, f: Mapping[bytes, bytes], outs: Sequence[Output], now: float, tally: _LedgerTally
    ) -> None:
        op = f.get(b"o")
        if op == b"L":
            tally.ledger(outs[0].value, now)
            return
        if op == b"C":
            self.cutoffs.inc()
            late = now - int(f[b"x"]) / 1000
            self.cutoff_lateness.observe(max(late, 0.0))
            log.info(
                "call cut off",
                extra={
                    "account": _text(f.get(b"k")),
                    "call_id": _text(f.get(b"c")),
                    "lateness_s": round(late, 3),
                },
            )
        elif op == b"S":
            self.suspensions.inc()
            log.info("account suspended", extra={"account": _text(f.get(b"k"))})
        elif op == b"R":
            self.restores.inc()
            log.info("account restored", extra={"account": _text(f.get(b"k"))})
        elif op == b"Q":
            self.recharge_requests.inc()
        elif op == b"F":
            self.recharge_results.labels("failed").inc()
        elif op == b"T":
            self.recharge_results.labels("timed_out").inc()
        for out in outs:
            if out.topic == names.LEDGER:
                tally.ledger(out.value, now)
            elif out.topic == names.DLQ:
                _log_refused(out)

    # ---- sampled ----
    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with those of the partitions assigned now."""
        self.consumer_lag.clear()
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(max(lag, 0))


@dataclass(slots=True)
class _LedgerTally:
    """What one relay pass published to the ledger, applied to the metrics once."""

    entries: Counter_[tuple[str, str]] = field(default_factory=Counter_)
    amounts: Counter_[tuple[str, str, str]] = field(default_factory=Counter_)
    recharges: int = 0
    delays: list[float] = field(default_factory=list)  # event time to publish, seconds

    def ledger(self, value: bytes, now: float) -> None:
        try:
            doc = orjson.loads(value)
            kind, currency, amount = doc["kind"], doc["currency"], int(doc["amount_micros"])
            at_ms = parse_time_ms(doc["time"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable ledger entry", extra={"bytes": len(value)})
            return
        self.entries[(kind, currency)] += 1
        if amount:
            self.amounts[(kind, currency, "credit" if amount > 0 else "debit")] += abs(amount)
        if kind == "recharge":
            self.recharges += 1
        self.delays.append(max(now - at_ms / 1000, 0.0))


def observe_all(h: Histogram, values: Sequence[float]) -> None:
    """``h.observe(v)`` for every value, in order, with one update per bucket.

    An observation takes two locked increments; per ledger entry they were a fifth of the
    relay's metrics. The sum is added value by value from the running sum, so it is the
    very float the observations one by one would give. Only for unlabelled histograms
    that one task observes (the relay's).
    """
    # prometheus_client's own fields, as observe() uses them (test_metrics compares the two)
    bounds: Sequence[float] = h._upper_bounds
    counts = [0] * len(bounds)
    last = len(bounds)
    total: float = h._sum.get()
    for v in values:
        total += v
        i = bisect_left(bounds, v)
        if i < last and v <= bounds[i]:  # observe() puts a NaN in no bucket
            counts[i] += 1
    h._sum.set(total)
    for bucket, n in zip(h._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


def _text(v: bytes | None) -> str:
    return v.decode(errors="replace") if v else ""


def _log_refused(out: Output) -> None:
    """One log line per refused record, with what identifies it (never its whole body)."""
    hdrs = dict(out.headers or ())
    event_id = ""
    with contextlib.suppress(orjson.JSONDecodeError):
        doc = orjson.loads(out.value)
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            event_id = doc["id"][:200]
    log.warning(
        "record refused",
        extra={
            "reason": _text(hdrs.get(names.DLQ_HEADER_ERROR)),
            "event_id": event_id,
            "account": _text(out.key)[:200],
            "topic": _text(hdrs.get(names.DLQ_HEADER_TOPIC)),
            "partition": _text(hdrs.get(names.DLQ_HEADER_PARTITION)),
            "offset": _text(hdrs.get(names.DLQ_HEADER_OFFSET)),
            "detail": _text(hdrs.get(names.DLQ_HEADER_DETAIL))[:300],
        },
    )


class Sampler:
    """Reads the gauges that no event updates: lag, backlog, active calls, holds.

    Lag comes from the consumer's own state (no broker round trip) every `lag_period`
    seconds; the Redis gauges take one pipelined round trip of three commands per slot
    every `redis_period` seconds over the slots this worker owns.
    """

    def __init__(
        self,
        metrics: Metrics,
        redis: Redis,
        keys: Keys,
        *,
        lag_period: float = 1.0,
        redis_period: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.redis = redis
        self.keys = keys
        self.lag_period = lag_period
        self.redis_period = redis_period
        self._currencies_seen: set[str] = set()
        self._redis_due = 0.0

    async def run(self, consumer: Any, slots: Any) -> None:
        """Sample until cancelled; `consumer()` and `slots()` give the current ones."""
        while True:
            try:
                await self.sample_lag(consumer())
                now = time.monotonic()
                if now >= self._redis_due:
                    self._redis_due = now + self.redis_period
                    await asyncio.wait_for(self.sample_redis(sorted(slots())), self.redis_period)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sampling metrics failed", exc_info=True)
                self.metrics.error("sample", exc)
            await asyncio.sleep(self.lag_period)

    async def sample_lag(self, consumer: Any) -> None:
        if consumer is None:
            self.metrics.set_lag({})
            self.metrics.assigned_partitions.set(0)
            return
        assigned = list(consumer.assignment())
        lags: dict[tuple[str, int], int] = {}
        for tp in assigned:
            try:
                high = consumer.highwater(tp)
                if high is None:
                    continue  # nothing fetched from it yet
                lags[(tp.topic, tp.partition)] = high - await consumer.position(tp)
            except Exception:  # revoked meanwhile: left out of this sample
                continue
        self.metrics.set_lag(lags)
        self.metrics.assigned_partitions.set(len(assigned))

    async def sample_redis(self, slots: Sequence[int]) -> None:
        m = self.metrics
        totals = dict.fromkeys(self._currencies_seen, 0)
        backlog = calls = 0
        if slots:
            # Three commands per slot, whatever the number of calls: apply.lua keeps the
            # slot's held total per currency as it moves holds.
            pipe = self.redis.pipeline(transaction=False)
            for slot in slots:
                pipe.xlen(self.keys.outbox(slot))
                pipe.zcard(self.keys.sessions(slot))
                pipe.hgetall(self.keys.held(slot))
            res: list[Any] = await pipe.execute()
            backlog, calls = sum(res[0::3]), sum(res[1::3])
            for held in res[2::3]:
                for raw, amount in held.items():
                    if raw:  # an account without a currency holds nothing worth a label
                        cur = raw.decode()
                        totals[cur] = totals.get(cur, 0) + int(amount)
        m.outbox_backlog.set(backlog)
        m.active_calls.set(calls)
        for currency, amount in totals.items():
            self._currencies_seen.add(currency)
            m.holds.labels(currency).set(amount / MICROS)
