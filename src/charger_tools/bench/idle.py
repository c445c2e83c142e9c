"""Idle CPUs that poll instead of halting, while `charger bench --only api --api-poll-idle`
measures.

Why: this machine is a KVM guest whose idle vCPUs halt at once (its cpuidle driver is
haltpoll with guest polling set to 0 ns). A halted vCPU gives its physical CPU back to
the host, and the next wake-up (a request, Valkey's answer) waits until the host runs it
again; that wait is counted as stolen CPU and shows in the tail. Latency-sensitive
deployments bound the CPUs' wake-up latency through the kernel's PM QoS interface, as the
`latency-performance` profile of tuned does: a 0 µs bound leaves only the polling idle
state. The bound holds while the file stays open and ends with it (or with the process),
so nothing outlasts the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

PM_QOS_DEVICE = Path("/dev/cpu_dma_latency")


@contextlib.contextmanager
def wake_up_latency_bound(microseconds: int, device: Path = PM_QOS_DEVICE) -> Iterator[str]:
    """Hold the CPUs' wake-up latency at most `microseconds` until the block ends; yields
    what happened: "held", or why not ("no such device", "not permitted")."""
    if microseconds < 0:
        raise ValueError(f"a latency bound is at least 0 µs, not {microseconds}")
    try:
        descriptor = os.open(device, os.O_WRONLY)  # never created where it is absent
    except FileNotFoundError:
        yield "no such device"
        return
    except PermissionError:
        yield "not permitted"
        return
    try:
        os.write(descriptor, struct.pack("i", microseconds))  # the interface reads an s32
        yield "held"
    finally:
        os.close(descriptor)
