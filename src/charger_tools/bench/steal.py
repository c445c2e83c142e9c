"""Stolen CPU during a latency benchmark: when it happened, and the latency away from it.

On a virtual machine the hypervisor may take the CPUs for a while (the `steal` column of
/proc/stat). Every process stalls at once and the requests due meanwhile wait, whatever
the server costs per request. `StealWatch` samples /proc/stat every `WINDOW_S` seconds;
`split` then sorts the requests by their due time into those due while CPU was stolen
(or within `AFTER_S` of it: the backlog it left takes a while to drain) and the rest, so a
report can give both figures instead of a tail that says only what the host did.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final

from charger_tools.bench.proc import machine_ticks

WINDOW_S: Final = 0.1
# A window is stolen from when at least this share of its CPU time was taken.
STOLEN_FROM_SHARE: Final = 0.01
AFTER_S: Final = 0.2


@dataclass
class StealWatch:
    # (start, end, stolen share) per window, on time.perf_counter's clock.
    windows: list[tuple[float, float, float]] = field(default_factory=list)

    async def run(self) -> None:
        """Samples until cancelled."""
        before = machine_ticks()
        started = time.perf_counter()
        while before is not None:
            await asyncio.sleep(WINDOW_S)
            now, ticks = time.perf_counter(), machine_ticks()
            if ticks is None:
                return
            total = ticks[1] - before[1]
            share = (ticks[0] - before[0]) / total if total else 0.0
            self.windows.append((started, now, share))
            before, started = ticks, now

    def share(self, start: float, end: float) -> float | None:
        """The stolen share of CPU time over the windows inside [start, end]."""
        inside = [w for w in self.windows if w[0] >= start and w[1] <= end]
        if not inside:
            return None
        return sum(share * (w_end - w_start) for w_start, w_end, share in inside) / sum(
            w_end - w_start for w_start, w_end, _ in inside
        )

    def stolen_spans(self) -> list[tuple[float, float]]:
        return [
            (start, end + AFTER_S)
            for start, end, share in self.windows
            if share >= STOLEN_FROM_SHARE
        ]


def split(
    dues: list[float], latencies_ms: list[float], spans: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """The latencies of requests due inside a stolen span, and of the others."""
    near: list[float] = []
    away: list[float] = []
    for due, latency in zip(dues, latencies_ms, strict=True):
        if any(start <= due <= end for start, end in spans):
            near.append(latency)
        else:
            away.append(latency)
    return near, away
