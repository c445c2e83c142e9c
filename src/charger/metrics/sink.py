"""The metrics of `charger ledger-sink`: a process of its own, with its own registry.

Records stored or skipped by verdict, batch commits and their latency, and how far the
sink is behind billing.ledger.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from charger.faults import KAFKA, OTHER, POSTGRES, dependency_of
from charger.metrics.process import SIZE_BUCKETS, ProcessMetrics, from_zero, replace_lags

# What the ledger sink did with a record (charger.statements.entries.Verdict), and the
# dependencies its loop counts failures of.
SINK_RESULTS = ("stored", "duplicate", "recreated", "conflict", "malformed")
SINK_DEPENDENCIES = (POSTGRES, KAFKA, OTHER)
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SinkMetrics(ProcessMetrics):
    """The metrics of `charger ledger-sink`, on a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.records = Counter(
            "charger_sink_records",
            "Records of billing.ledger the sink handled, by result: stored (a new entry), "
            "duplicate (the stored entry again), recreated (same id and amounts, another "
            "balance after: the first is kept), conflict (another payload under a stored id: "
            "refused), malformed (no ledger entry: refused).",
            ["result"],
            registry=r,
        )
        self.batch_commit = Histogram(
            "charger_sink_batch_commit_seconds",
            "Time of one batch's database transaction, from its first statement to its commit.",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "charger_sink_batch_size",
            "Records per batch the sink stored.",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "charger_sink_lag",
            "Records of billing.ledger behind the partition's end, per partition assigned to "
            "this sink: entries not in the database yet.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "charger_sink_assigned_partitions",
            "Partitions of billing.ledger assigned to this sink.",
            registry=r,
        )
        self.last_commit = Gauge(
            "charger_sink_last_commit_timestamp_seconds",
            "When the sink last committed a batch (database, then offsets).",
            registry=r,
        )
        self.errors = Counter(
            "charger_sink_errors",
            "Batches that failed and were fetched again after a backoff, by the dependency "
            "that failed (postgres, kafka, other).",
            ["dependency"],
            registry=r,
        )
        from_zero(self.records, SINK_RESULTS)
        from_zero(self.errors, SINK_DEPENDENCIES)

    # What the sink's `charger.deps.Retrier` records.
    def error(self, stage: str, exc: BaseException) -> None:
        """A batch failed with `exc` and will be fetched again."""
        self.errors.labels(dependency_of(exc)).inc()

    def backing_off(self, stage: str, dependency: str, delay: float) -> None:
        """Nothing: the sink counts its failures by dependency, its log lines say each wait."""

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Replace the lag series with those of the partitions assigned now."""
        replace_lags(self.lag, lags)
        self.assigned_partitions.set(len(lags))
