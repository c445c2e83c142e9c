"""The charger throughput run's worker process: the real Runtime, timed from the inside.

Run as ``python -m charger_tools.bench.child SPEC.json`` with the ``CHARGER_*`` settings in its
environment. It starts `charger.runtime.Runtime` exactly as the Faust service does, notes
when the first fetch that returned records was issued and when the commit that covered
the last target offset returned and the relay pass that publishes that batch's outputs
ended (so every ledger entry is out by then), writes its figures to the spec's `stats` file and
keeps running until SIGTERM.

When several of these processes share a consumer group, each waits behind a gate: it
reports its assignment to the `ready` file and fetches nothing until the `gate` file
exists, so the timed run starts with the group formed. Its targets are then those of the
partitions it was assigned.

SPEC: {"targets": {"topic/partition": end offset}, "stats": path, "ready": path,
       "gate": path, "pids": {"broker": pid, "redis": pid}, "profile": path or ""}
"""

from __future__ import annotations

import asyncio
import cProfile
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from charger.kafka.publisher import Publisher
from charger.runtime import Runtime
from charger.settings import Settings
from charger_tools.bench.proc import cpu_seconds, peak_rss_mb, write_json


class Probe:
    """Wraps the worker's consumer to time the run without touching the charging path."""

    def __init__(self, targets: dict[str, int], pids: dict[str, int], profile: str) -> None:
        self.all_targets = targets
        self.targets = targets
        self.open = asyncio.Event()
        self.pids = pids
        self.committed: dict[str, int] = {}
        self.first: float | None = None
        self.end: float | None = None
        self.records = 0
        self.fetches = 0
        self.cpu_start: dict[str, float] = {}
        self.cpu_end: dict[str, float] = {}
        self.done = asyncio.Event()
        self.profiler = cProfile.Profile() if profile else None

    def cpu(self) -> dict[str, float]:
        out = {"worker": time.process_time()}
        for name, pid in self.pids.items():
            seconds = cpu_seconds(pid)
            if seconds is not None:
                out[name] = seconds
        return out

    def install(self, consumer: Any, publisher: Publisher) -> None:
        getmany, commit = consumer.getmany, consumer.commit

        async def timed_getmany(*args: Any, **kwargs: Any) -> Any:
            if not self.open.is_set():
                await asyncio.sleep(0.02)  # behind the gate: fetch nothing yet
                return {}
            issued = time.monotonic()
            data = await getmany(*args, **kwargs)
            if data and self.end is None:
                if self.first is None:
                    self.first = issued
                    self.cpu_start = self.cpu()
                    if self.profiler is not None:
                        self.profiler.enable()
                self.fetches += 1
                self.records += sum(len(msgs) for msgs in data.values())
            return data

        async def timed_commit(offsets: Any = None) -> Any:
            result = await commit(offsets)
            for tp, off in (offsets or {}).items():
                key = f"{tp.topic}/{tp.partition}"
                self.committed[key] = max(self.committed.get(key, 0), int(off))
            if self.end is None and all(
                self.committed.get(k, -1) >= v for k, v in self.targets.items()
            ):
                await publisher.quiesce()  # commits run ahead of the relay: wait for it
                self.end = time.monotonic()
                if self.profiler is not None:
                    self.profiler.disable()
                self.cpu_end = self.cpu()
                self.done.set()
            return result

        consumer.getmany = timed_getmany
        consumer.commit = timed_commit

    def opened(self, assigned: set[str]) -> None:
        """The gate opened: the targets are those of the partitions this process owns."""
        self.targets = {k: v for k, v in self.all_targets.items() if k in assigned}
        self.open.set()


async def gatekeeper(probe: Probe, consumer: Any, ready: Path, gate: Path) -> None:
    """Report the assignment until the gate file appears, then open the probe's gate."""
    while True:
        assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in consumer.assignment())
        write_json(ready, {"assigned": assigned})
        if gate.exists():
            probe.opened(set(assigned))
            return
        await asyncio.sleep(0.05)


def redis_waits(rt: Runtime) -> dict[str, dict[str, float]]:
    """WAIT / WAITAOF per stage over the whole process (CHARGER_REDIS_MIN_REPLICAS runs)."""
    sample = rt.metrics.registry.get_sample_value
    out: dict[str, dict[str, float]] = {}
    for stage in ("apply", "relay"):
        labels = {"stage": stage}
        count = sample("charger_redis_wait_seconds_count", labels) or 0.0
        if count:
            out[stage] = {
                "waits": count,
                "seconds": round(sample("charger_redis_wait_seconds_sum", labels) or 0.0, 3),
                "timeouts": sample("charger_redis_wait_timeouts_total", labels) or 0.0,
            }
    return out


async def run(spec: dict[str, Any]) -> None:
    settings = Settings()
    probe = Probe(spec["targets"], spec.get("pids", {}), spec.get("profile", ""))
    rt = Runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.monotonic()
    await rt.start()
    # The batch loop task is scheduled but has not run yet: wrap before its first fetch.
    probe.install(rt.worker.consumer, rt.worker.publisher)
    joined = time.monotonic()
    keeper = asyncio.create_task(
        gatekeeper(probe, rt.worker.consumer, Path(spec["ready"]), Path(spec["gate"]))
    )
    try:
        waiter = asyncio.create_task(probe.done.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if probe.end is not None and probe.first is not None:
            backlog = 0  # of the slots this process owns: the others may still be busy
            for slot in sorted(rt.worker.assigned_slots):
                backlog += await rt.redis.xlen(rt.keys.outbox(slot))
            if probe.profiler is not None:
                probe.profiler.dump_stats(spec["profile"])
            write_json(
                Path(spec["stats"]),
                {
                    "seconds": probe.end - probe.first,
                    "first": probe.first,
                    "end": probe.end,
                    "partitions": sorted(probe.targets),
                    "startup_seconds": joined - started,
                    "records": probe.records,
                    "fetches": probe.fetches,
                    "batches": rt.worker.batches,
                    "outbox_backlog": backlog,
                    "cpu_seconds": {k: probe.cpu_end[k] - v for k, v in probe.cpu_start.items()},
                    "rss_mb": peak_rss_mb(),
                    "redis_wait": redis_waits(rt),
                },
            )
        await stop.wait()
    finally:
        keeper.cancel()
        await rt.stop()


def main() -> None:
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    asyncio.run(run(spec))


if __name__ == "__main__":
    main()
