"""A histogram observed a batch of values at a time, for the relay's per-entry latency."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class BatchHistogram(Collector):
    """A histogram observed a batch of values at a time, exported like any other.

    The relay observes one latency per ledger entry; through `Histogram.observe` that took
    two locked increments each, a fifth of the relay's metrics. Here a batch takes one lock
    and one update per bucket. Only for unlabelled histograms.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = [float(b) for b in buckets]
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_all(self, values: Iterable[float]) -> None:
        bounds, last = self.bounds, len(self.bounds)
        counts = [0] * (last + 1)
        total = 0.0
        for value in values:
            total += value
            counts[bisect_left(bounds, value) if value <= bounds[-1] else last] += 1
        with self._lock:
            self._sum += total
            for i, n in enumerate(counts):
                self._counts[i] += n

    def observe(self, value: float) -> None:
        self.observe_all((value,))

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], counts, strict=True):
            running += n
            cumulative.append((_bound_text(bound), running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        yield family


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
