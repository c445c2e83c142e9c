"""The metrics of `charger api`, on a registry of its own (its own /metrics): request
latency by route template, backend failures, and the rate plans it rates with."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from charger.metrics.process import ProcessMetrics, from_zero

# Request latency of `charger api`: 0.5 ms to 10 s (an authorization is a Redis round trip;
# a CSV export may read a year of entries).
_REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Route label of requests that matched no route: their paths are arbitrary and must not
# become label values.
UNMATCHED_ROUTE = "unmatched"
API_BACKENDS = ("redis", "statements", "plans")


class ApiMetrics(ProcessMetrics):
    """The metrics of `charger api`, on a registry of its own (its own /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.request_seconds = Histogram(
            "charger_api_request_seconds",
            "Time from a request's arrival to the end of its answer, by route template "
            "(not the path: no account ids), method and status code.",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "charger_api_backend_errors_total",
            "Requests answered 503 because a backend failed or is not there, by backend.",
            ["backend"],
            registry=r,
        )
        self.rate_plans = Gauge(
            "charger_api_rate_plans", "Rate plan ids the API rates with.", registry=r
        )
        from_zero(self.backend_errors, API_BACKENDS)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.request_seconds.labels(route, method, str(status)).observe(seconds)
