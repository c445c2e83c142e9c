"""Prometheus metrics of every charger process, each on a registry its app owns (no global
state).

Every metric charger exports is defined in this package. Names follow the Prometheus
conventions: prefix ``charger_``, base units (seconds; money in units of the account's
currency, the ledger's micro-units divided by 10^6), ``_total`` on counters, and no
account, call or number ids in labels.

One module per process: `Metrics` (worker.py) those of the worker, `SinkMetrics`
(sink.py) those of `charger ledger-sink`, `ApiMetrics` (api.py) those of `charger api`.
All three build on `ProcessMetrics` (process.py): the build and the process metrics every
charger process exports. The names are re-exported here, so callers import from
`charger.metrics`.
"""

from charger.metrics.api import API_BACKENDS, UNMATCHED_ROUTE, ApiMetrics
from charger.metrics.histogram import BatchHistogram
from charger.metrics.process import (
    ProcessMetrics,
    build_version,
    from_zero,
    replace_lags,
)
from charger.metrics.sink import SINK_DEPENDENCIES, SINK_RESULTS, SinkMetrics
from charger.metrics.worker import (
    ERROR_STAGES,
    LOOP_STAGES,
    MICROS,
    RECHARGE_STATUSES,
    Metrics,
)

__all__ = [
    "API_BACKENDS",
    "ERROR_STAGES",
    "LOOP_STAGES",
    "MICROS",
    "RECHARGE_STATUSES",
    "SINK_DEPENDENCIES",
    "SINK_RESULTS",
    "UNMATCHED_ROUTE",
    "ApiMetrics",
    "BatchHistogram",
    "Metrics",
    "ProcessMetrics",
    "SinkMetrics",
    "build_version",
    "from_zero",
    "replace_lags",
]
