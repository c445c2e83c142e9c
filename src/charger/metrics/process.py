"""What every charger process exports, and the helpers each process's metric set builds on.

The worker, `charger ledger-sink` and `charger api` each own a registry (no global state);
`ProcessMetrics` puts on it the build and the process metrics they all export, and the
helpers start label series at 0 and replace per-partition lag series.
"""

from __future__ import annotations

import itertools
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# Records per batch: the worker's fetched batches and the sink's stored ones.
SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


def build_version() -> str:
    try:
        return metadata.version("charger")
    except metadata.PackageNotFoundError:
        return "unknown"


class ProcessMetrics:
    """What every charger process exports on its registry (one of its own unless given):
    the build it runs, and the process, platform and garbage collector metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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


def from_zero(metric: MetricWrapperBase, *label_values: Iterable[str]) -> None:
    """Start the series of every combination of known label values at 0, so that rates and
    alerts have series before the first occurrence."""
    for values in itertools.product(*label_values):
        metric.labels(*values)


def replace_lags(gauge: Gauge, lags: Mapping[tuple[str, int], int]) -> None:
    """Replace the (topic, partition) series of `gauge` with those of the partitions
    assigned now; a lag is never below 0."""
    gauge.clear()
    for (topic, partition), lag in lags.items():
        gauge.labels(topic, str(partition)).set(max(lag, 0))
