"""Which CPU the parts of `charger bench --only api` run on.

By default the load generator, `charger api` and the Valkey it reads (when the benchmark
started that Valkey) all run on one CPU, the last the benchmark may use; `--api-spread`
leaves them where the kernel puts them.

Why: every authorization wakes the API (a request), Valkey (the `HMGET`), the API again
(the reply) and the generator (the answer). On a virtual machine a wake-up sent to
another vCPU that was idle is an interrupt the hypervisor delivers by scheduling that
vCPU, and the wait shows as stolen CPU (/proc/stat). Measured here: 8–38% of the CPU
time of spread runs was stolen, and their p99 followed it into the hundreds of
milliseconds, while two busy loops alone saw 1% stolen. On one CPU the wake-ups stay
local and the stolen share falls to 0–2.2%. The API then shares its CPU with the generator
and Valkey (together about 0.75 of it at 1,000/s): a harder condition for the API than a
core of its own, as a Kubernetes node with the static CPU manager gives a Guaranteed pod.
"""

from __future__ import annotations

import os
from pathlib import Path


def placement(cpus: set[int] | frozenset[int]) -> frozenset[int]:
    """The one CPU of `cpus` the benchmark's processes share: the last (the kernel and
    everything else on the machine favour the first)."""
    return frozenset({max(cpus)})


def pin_process(pid: int, cpus: frozenset[int]) -> bool:
    """Every thread of process `pid` on `cpus` (affinity is per thread on Linux); False
    when the process cannot be moved (gone, or not ours to move)."""
    try:
        threads = [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        threads = [pid]
    try:
        for thread in threads:
            os.sched_setaffinity(thread, cpus)
    except OSError:
        return False
    return True
