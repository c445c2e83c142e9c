"""Prometheus metrics of the worker, on a registry the app owns (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


class Metrics:
    """Every metric charger exports; names follow the Prometheus conventions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.ticked = Counter(
            "charger_sessions_ticked_total", "Due call sessions the ticker looked at.", registry=r
        )
        self.last_processed = Gauge(
            "charger_last_processed_timestamp_seconds",
            "When the last batch was committed.",
            registry=r,
        )
