"""The three throughput runs over the same produced events: charger, faust_agent, limit.

Each run gets a fresh consumer group, started at the first offset the workload wrote, and
a fresh Redis key prefix with the accounts loaded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from redis.asyncio import Redis

from charger.bench.proc import cpu_seconds, peak_rss_mb, read_json, write_json
from charger.bench.workload import (
    Workload,
    charger_group_offsets,
    load_charger_accounts,
    load_plain_accounts,
    plain_key,
    start_group,
)
from charger.embedded import create_topics
from charger.rating import load_plans
from charger.runtime import default_plans_path, script_config
from charger.settings import Settings
from charger.store.keys import Keys
from charger.store.redis_store import RedisStore
from topics import names
from topics.names import TopicSpec

# The limit's debit: every event of a batch in one call, one HINCRBY each.
DEBIT_BATCH = """
local amount = ARGV[1]
for i = 1, #KEYS do redis.call('HINCRBY', KEYS[i], 'bal', amount) end
return #KEYS
"""

FAUST_LEDGER = "bench.faust-ledger"


@dataclass
class Env:
    """Where the runs happen: servers, their pids when we started them, a scratch folder."""

    bootstrap: str
    redis_url: str
    workdir: Path
    pids: dict[str, int] = field(default_factory=dict)

    def new(self, run: str) -> tuple[str, str]:
        """A fresh (Redis key prefix, consumer group) for one run."""
        uid = uuid.uuid4().hex[:8]
        return f"bench{uid}", f"charger-bench-{run}-{uid}"

    def settings(self, prefix: str, group: str, **extra: Any) -> Settings:
        return Settings(
            kafka_bootstrap=self.bootstrap,
            redis_url=self.redis_url,  # type: ignore[arg-type]
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
    await start_group(env.bootstrap, s.group_id, await charger_group_offsets(w, env.bootstrap, events_at))


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


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the process we started (by its pid), then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def spawn(argv: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *argv], env=environ, stdout=out, stderr=subprocess.STDOUT
        )


async def run_charger(
    env: Env, w: Workload, batch_max_records: int, batch_timeout_ms: int, profile: str = ""
) -> dict[str, Any]:
    """The real charging path in its own process, from first fetch to last commit."""
    prefix, group = env.new("charger")
    s = env.settings(
        prefix, group, batch_max_records=batch_max_records, batch_timeout_ms=batch_timeout_ms
    )
    await prepare_charger(env, w, s, names.TELEPHONY_EVENTS)
    stats = env.workdir / f"{group}.json"
    spec = {
        "targets": {
            f"{tp.topic}/{tp.partition}": end
            for tp, end in w.ends.items()
            if tp.topic == names.TELEPHONY_EVENTS
        },
        "stats": str(stats),
        "pids": env.pids,
        "profile": profile,
    }
    spec_path = env.workdir / f"{group}.spec.json"
    write_json(spec_path, spec)
    proc = spawn(
        ["-m", "charger.bench.child", str(spec_path)],
        settings_env(s),
        env.workdir / f"{group}.log",
    )
    try:
        result = await wait_stats(stats, proc, timeout=300)
        rss = peak_rss_mb(proc.pid)
    finally:
        stop_process(proc)
    seconds = float(result["seconds"])
    return {
        "events": len(w.events),
        "records_fetched": result["records"],
        "seconds": round(seconds, 3),
        "events_per_s": round(len(w.events) / seconds, 1),
        "batches": result["batches"],
        "outbox_backlog_at_end": result["outbox_backlog"],
        "startup_seconds": round(float(result["startup_seconds"]), 2),
        "cpu_share": {k: round(v / seconds, 3) for k, v in result["cpu_seconds"].items()},
        "rss_mb": rss if rss is not None else result["rss_mb"],
        "settings": {
            "batch_max_records": s.batch_max_records,
            "batch_timeout_ms": s.batch_timeout_ms,
            "partitions": s.partitions,
            "tick_ms": s.tick_ms,
        },
    }


async def run_limit(env: Env, w: Workload, batch_max_records: int) -> dict[str, Any]:
    """Bare getmany + orjson + one batched HINCRBY script call per batch, nothing else."""
    prefix, group = env.new("limit")
    redis = Redis.from_url(env.redis_url)
    consumer = AIOKafkaConsumer(
        names.TELEPHONY_EVENTS,
        bootstrap_servers=env.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_max_records,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    try:
        await load_plain_accounts(w, redis, prefix)
        starts = {tp: o for tp, o in w.starts.items() if tp.topic == names.TELEPHONY_EVENTS}
        await start_group(env.bootstrap, group, starts)
        debit = redis.register_script(DEBIT_BATCH)
        await consumer.start()
        ends = {tp: o for tp, o in w.ends.items() if tp.topic == names.TELEPHONY_EVENTS}
        total, seen, batches = len(w.events), 0, 0
        first: float | None = None
        cpu0: dict[str, float] = {}
        deadline = time.monotonic() + 300
        head = f"{prefix}:a:"
        while seen < total:
            issued = time.monotonic()
            data = await consumer.getmany(timeout_ms=50, max_records=batch_max_records)
            if not data:
                if issued > deadline:
                    raise TimeoutError(f"limit run saw {seen} of {total} events")
                continue
            if first is None:
                first, cpu0 = issued, {"worker": time.process_time(), **env.cpu()}
            keys: list[str] = []
            for tp, msgs in data.items():
                end = ends.get(tp, 0)
                for m in msgs:
                    if m.offset >= end:
                        continue
                    seen += 1
                    try:
                        doc = orjson.loads(m.value)
                        keys.append(head + doc["account"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
            if keys:
                await debit(keys=keys, args=[-1])
            batches += 1
        assert first is not None
        seconds = time.monotonic() - first
        cpu1 = {"worker": time.process_time(), **env.cpu()}
        sample = await redis.hget(plain_key(prefix, next(iter(w.account_plans))), "bal")
    finally:
        await consumer.stop()
        await redis.aclose()
    return {
        "events": seen,
        "seconds": round(seconds, 3),
        "events_per_s": round(seen / seconds, 1),
        "batches": batches,
        "cpu_share": {k: round((cpu1[k] - v) / seconds, 3) for k, v in cpu0.items()},
        "debited_sample_balance": int(sample or 0),
    }


async def run_faust(env: Env, w: Workload, cap_s: float, cap_events: int) -> dict[str, Any]:
    """The Faust agent in its own process, stopped after all events or at the cap."""
    prefix, group = env.new("faust")
    redis = Redis.from_url(env.redis_url)
    try:
        await load_plain_accounts(w, redis, prefix)
    finally:
        await redis.aclose()
    await create_topics(
        env.bootstrap, [TopicSpec(FAUST_LEDGER, "Faust baseline ledger", "bench", "account", 8)]
    )
    starts = {tp: o for tp, o in w.starts.items() if tp.topic == names.TELEPHONY_EVENTS}
    await start_group(env.bootstrap, group, starts)
    stats = env.workdir / f"{group}.json"
    spec = {
        "bootstrap": env.bootstrap,
        "redis_url": env.redis_url,
        "prefix": prefix,
        "app_id": group,
        "ledger_topic": FAUST_LEDGER,
        "stats": str(stats),
        "accounts": w.account_plans,
    }
    spec_path = env.workdir / f"{group}.spec.json"
    write_json(spec_path, spec)
    target = min(len(w.events), cap_events) if cap_events > 0 else len(w.events)
    proc = spawn(
        ["-m", "charger.bench.faust_agent", str(spec_path)],
        dict(os.environ),
        env.workdir / f"{group}.log",
    )
    try:
        doc = await _follow_faust(stats, proc, target, cap_s)
        cpu = cpu_seconds(proc.pid)
    finally:
        stop_process(proc)
    count, first, last = int(doc["count"]), float(doc["first"]), float(doc["last"])
    seconds = last - first
    return {
        "events": count,
        "of_events": len(w.events),
        "capped": count < len(w.events),
        "cap": {"seconds": cap_s, "events": cap_events},
        "seconds": round(seconds, 3),
        "events_per_s": round(count / seconds, 1) if seconds > 0 else None,
        "undecodable": doc["bad"],
        "process_cpu_seconds": cpu,
    }


async def _follow_faust(
    stats: Path, proc: subprocess.Popen[bytes], target: int, cap_s: float
) -> dict[str, Any]:
    """Poll the agent's progress until it reached `target` events or ran `cap_s` seconds."""
    deadline = time.monotonic() + 120 + cap_s  # joins and startup included
    doc: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if proc.poll() is not None:
            raise RuntimeError(f"faust agent exited with {proc.returncode}")
        doc = read_json(stats)
        if doc is None or doc["first"] is None:
            continue
        if doc["count"] >= target or time.monotonic() - doc["first"] >= cap_s:
            await asyncio.sleep(0.6)  # one more progress write
            return read_json(stats) or doc
    if doc is None or doc["first"] is None:
        raise TimeoutError("the faust agent processed nothing")
    return doc
