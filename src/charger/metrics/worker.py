"""Prometheus metrics of the worker, on a registry the app owns (no global state).

Three kinds of recording:

- the batch loop counts what it consumed and processed (``polled``, ``error``), and the
  loops their failures and backoff by dependency (``error``, ``backing_off``; the
  dependency ``Probe`` of `charger.deps` sets ``charger_dependency_up``);
- the relay reports every output the broker acknowledged (`charger.published`): ledger
  entries and money moved, event-to-ledger latency, cutoffs and their lateness,
  suspensions, restores and recharges;
- a `Sampler` (`charger.sampler`) reads gauges every few seconds: consumer lag, outbox
  backlog, active calls and holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from charger.faults import DEPENDENCIES, OTHER, REDIS, dependency_of
from charger.metrics.histogram import BatchHistogram
from charger.metrics.process import SIZE_BUCKETS, ProcessMetrics, from_zero, replace_lags
from charger.store.durability import STAGES, Stage, WaitOutcome
from charger_topics import names
from charger_topics.reasons import ALL as DLQ_REASONS

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_WAIT_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

MICROS = 1_000_000

RECHARGE_STATUSES = ("succeeded", "failed", "timed_out")
# Loops that retry a failed batch or tick (charger_batch_errors_total), and every stage
# that can fail on a dependency (the probe only asks whether it answers).
LOOP_STAGES = ("batch", "tick")
ERROR_STAGES = (*LOOP_STAGES, "sample", "probe")


class Metrics(ProcessMetrics):
    """Every metric of the worker; names follow the Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
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
            "charger_batch_size", "Records per fetched batch.", buckets=SIZE_BUCKETS, registry=r
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
        self.redis_forgotten = Counter(
            "charger_redis_forgotten_records",
            "Records applied again because Redis had lost them (a failover to a replica that "
            "was behind, a restart from an older state).",
            registry=r,
        )
        self.records_unrecoverable = Counter(
            "charger_records_unrecoverable",
            "Records Redis had lost that Kafka no longer held, so they could not be applied "
            "again: retention shorter than the gap.",
            registry=r,
        )
        self.redis_wait_seconds = Histogram(
            "charger_redis_wait_seconds",
            "How long WAIT / WAITAOF held applied writes until the replicas had them (server "
            "time), by stage (apply: a batch or tick; relay: before publishing).",
            ["stage"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.redis_wait_timeouts = Counter(
            "charger_redis_wait_timeouts",
            "WAIT / WAITAOF that timed out with fewer replicas than CHARGER_REDIS_MIN_REPLICAS "
            "(the batch is retried, the outputs wait), by stage.",
            ["stage"],
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
        self.event_to_ledger = BatchHistogram(
            "charger_event_to_ledger_seconds",
            "From the time of the causing event to the ledger entry acknowledged by the broker.",
            _LATENCY_BUCKETS,
        )
        r.register(self.event_to_ledger)
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
        from_zero(self.dlq, DLQ_REASONS)
        from_zero(self.recharge_results, RECHARGE_STATUSES)
        from_zero(self.errors, LOOP_STAGES)
        from_zero(self.retry_delay, LOOP_STAGES)
        from_zero(self.redis_errors, ERROR_STAGES)
        from_zero(self.dependency_errors, (*DEPENDENCIES, OTHER), ERROR_STAGES)
        from_zero(self.dependency_up, DEPENDENCIES)
        from_zero(self.redis_wait_seconds, STAGES)
        from_zero(self.redis_wait_timeouts, STAGES)
        from_zero(self.backoff_seconds, (*DEPENDENCIES, OTHER))
        from_zero(self.consumed, names.CO_PARTITIONED)
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
        """A loop waits `delay` seconds after a failure of `dependency` (0: the wait is over)."""
        self.retry_delay.labels(stage).set(delay)
        self.backoff_seconds.labels(dependency).inc(delay)

    def redis_waited(self, stage: Stage, outcome: WaitOutcome, seconds: float) -> None:
        """A WAIT / WAITAOF of `stage` ended with `outcome` after `seconds`."""
        self.redis_wait_seconds.labels(stage).observe(seconds)
        if outcome is WaitOutcome.TIMED_OUT:
            self.redis_wait_timeouts.labels(stage).inc()

    # ---- sampled ----
    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with those of the partitions assigned now."""
        replace_lags(self.consumer_lag, lags)
