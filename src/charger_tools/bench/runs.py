"""The charger runs (one process, or several in one group) and what every run shares.

Each run gets a fresh consumer group, started at the first offset the workload wrote, and
a fresh Redis key prefix with the accounts loaded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from charger.protocol.keys import Keys
from charger.rating import load_plans
from charger.runtime import default_plans_path, script_config
from charger.settings import Settings
from charger.store.redis_store import RedisStore
from charger_tools.bench.proc import cpu_seconds, peak_rss_mb, read_json, write_json
from charger_tools.bench.workload import (
    Workload,
    charger_group_offsets,
    load_charger_accounts,
    start_group,
)
from charger_tools.processes import stop_process
from charger_topics import names


@dataclass
class Env:
    """Where the runs happen: servers, their pids when we started them, a scratch folder."""

    bootstrap: str
    redis_url: str
    workdir: Path
    pids: dict[str, int] = field(default_factory=dict)
    prefixes: list[str] = field(default_factory=list)
    broker: str = "given"  # which broker the figures come from

    def new(self, run: str) -> tuple[str, str]:
        """A fresh (Redis key prefix, consumer group) for one run."""
        uid = uuid.uuid4().hex[:8]
        self.prefixes.append(f"bench{uid}")
        return f"bench{uid}", f"charger-bench-{run}-{uid}"

    def settings(self, prefix: str, group: str, **extra: Any) -> Settings:
        return Settings(
            kafka_bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            redis_prefix=prefix,
            group_id=group,
            **extra,
        )

    def cpu(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            seconds = cpu_seconds(pid)
            if seconds is not None:
                out[name] = seconds
        return out


def settings_env(s: Settings) -> dict[str, str]:
    """The CHARGER_* environment a worker process reads `s` back from."""
    env = dict(os.environ)
    for name, value in s.model_dump().items():
        env[f"CHARGER_{name.upper()}"] = str(value)
    env["CHARGER_REDIS_URL"] = s.redis_dsn()
    return env


async def prepare_charger(env: Env, w: Workload, s: Settings, events_at: str) -> None:
    """Accounts through apply.lua under the run's prefix; the group placed on the events."""
    redis = Redis.from_url(env.redis_url)
    try:
        store = RedisStore(redis, Keys(s.redis_prefix, s.partitions), script_config(s))
        await load_charger_accounts(w, store, dict(load_plans(default_plans_path())))
    finally:
        await redis.aclose()
    await start_group(
        env.bootstrap, s.group_id, await charger_group_offsets(w, env.bootstrap, events_at)
    )


async def wait_stats(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = read_json(path)
        if doc is not None:
            return doc
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark process exited with {proc.returncode}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no result from the benchmark process after {timeout:.0f}s")


def spawn(argv: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *argv], env=environ, stdout=out, stderr=subprocess.STDOUT
        )


async def run_charger(
    env: Env,
    w: Workload,
    batch_max_records: int,
    batch_timeout_ms: int,
    profile: str = "",
    workers: int = 1,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The real charging path in `workers` processes of one group, first fetch to last commit
    (`extra`: more worker settings, such as CHARGER_REDIS_MIN_REPLICAS)."""
    prefix, group = env.new("charger")
    s = env.settings(
        prefix,
        group,
        batch_max_records=batch_max_records,
        batch_timeout_ms=batch_timeout_ms,
        **(extra or {}),
    )
    await prepare_charger(env, w, s, names.TELEPHONY_EVENTS)
    targets = {
        f"{tp.topic}/{tp.partition}": end
        for tp, end in w.ends.items()
        if tp.topic == names.TELEPHONY_EVENTS
    }
    gate = env.workdir / f"{group}.go"
    procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    try:
        for i in range(workers):
            stats, ready = env.workdir / f"{group}-{i}.json", env.workdir / f"{group}-{i}.ready"
            spec = {
                "targets": targets,
                "stats": str(stats),
                "ready": str(ready),
                "gate": str(gate),
                "pids": env.pids,
                "profile": profile if i == 0 else "",
            }
            spec_path = env.workdir / f"{group}-{i}.spec.json"
            write_json(spec_path, spec)
            log = env.workdir / f"{group}-{i}.log"
            proc = spawn(["-m", "charger_tools.bench.child", str(spec_path)], settings_env(s), log)
            procs.append((proc, stats, ready))
        owners = await _wait_assigned([(p, r) for p, _, r in procs], set(targets))
        gate.touch()
        results = [
            await wait_stats(stats, proc, timeout=300)
            for (proc, stats, _), owned in zip(procs, owners, strict=True)
            if owned
        ]
        rss = [peak_rss_mb(proc.pid) for proc, _, _ in procs]
    finally:
        for proc, _, _ in procs:
            stop_process(proc)
    seconds = max(float(r["end"]) for r in results) - min(float(r["first"]) for r in results)
    cpu: dict[str, float] = {}
    for r in results:
        for k, v in r["cpu_seconds"].items():
            # the servers' figures are seen by every process: count them once
            cpu[k] = cpu.get(k, 0.0) + v if k == "worker" else max(cpu.get(k, 0.0), v)
    return {
        "events": len(w.events),
        "workers": workers,
        "records_fetched": sum(int(r["records"]) for r in results),
        "seconds": round(seconds, 3),
        "events_per_s": round(len(w.events) / seconds, 1),
        "batches": sum(int(r["batches"]) for r in results),
        "outbox_backlog_at_end": sum(int(r["outbox_backlog"]) for r in results),
        "startup_seconds": round(max(float(r["startup_seconds"]) for r in results), 2),
        "cpu_share": {k: round(v / seconds, 3) for k, v in cpu.items()},
        "events_per_cpu_s": round(len(w.events) / cpu["worker"], 1) if cpu.get("worker") else None,
        "rss_mb": max((x for x in rss if x is not None), default=None),
        "redis_wait": _waits([r.get("redis_wait", {}) for r in results], len(w.events)),
        "settings": {
            "batch_max_records": s.batch_max_records,
            "batch_timeout_ms": s.batch_timeout_ms,
            "fetch_wait_ms": s.fetch_wait_ms,
            "partitions": s.partitions,
            "tick_ms": s.tick_ms,
            "redis_min_replicas": s.redis_min_replicas,
        },
    }


def _waits(per_process: list[dict[str, dict[str, float]]], events: int) -> dict[str, Any]:
    """WAIT / WAITAOF of the run by stage: how many, their mean, their seconds per event."""
    out: dict[str, Any] = {}
    for stage in sorted({s for waits in per_process for s in waits}):
        count = sum(w[stage]["waits"] for w in per_process if stage in w)
        seconds = sum(w[stage]["seconds"] for w in per_process if stage in w)
        out[stage] = {
            "waits": int(count),
            "mean_ms": round(seconds / count * 1000, 2) if count else None,
            "timeouts": int(sum(w[stage]["timeouts"] for w in per_process if stage in w)),
            "us_per_event": round(seconds / events * 1e6, 1) if events else None,
        }
    return out


async def _wait_assigned(
    procs: list[tuple[subprocess.Popen[bytes], Path]], wanted: set[str], timeout: float = 120
) -> list[bool]:
    """Until the processes' assignments cover `wanted`, disjoint and steady for a second."""
    deadline = time.monotonic() + timeout
    last: list[frozenset[str]] | None = None
    steady_since = time.monotonic()
    while time.monotonic() < deadline:
        for proc, _ in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"charger process exited with {proc.returncode}")
        now: list[frozenset[str]] = []
        for _, ready in procs:
            doc = read_json(ready) or {}
            now.append(frozenset(a for a in doc.get("assigned", ()) if a in wanted))
        covered = frozenset().union(*now) == wanted
        disjoint = sum(len(a) for a in now) == len(wanted)
        if now != last:
            last, steady_since = now, time.monotonic()
        elif covered and disjoint and time.monotonic() - steady_since >= 1.0:
            return [bool(a) for a in now]
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the charger group did not settle: {last}")


async def drop_prefixes(redis_url: str, prefixes: list[str]) -> int:
    """Delete every key the runs wrote (on servers we did not start)."""
    redis = Redis.from_url(redis_url)
    dropped = 0
    try:
        for prefix in prefixes:
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    dropped += await redis.unlink(*batch)
                    batch.clear()
            if batch:
                dropped += await redis.unlink(*batch)
    finally:
        await redis.aclose()
    return dropped
