"""The two baselines over the same events as charger: a plain Faust agent and the limit.

- faust_agent: `charger_tools.bench.faust_agent` in its own process, followed through its
  progress file until it processed every event or ran out of time;
- limit: aiokafka `getmany`, `orjson.loads` and one batched HINCRBY script call per
  batch, in this process, with no outputs: how fast fetching, decoding and one Redis call
  per batch can go on this machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from redis.asyncio import Redis

from charger.kafka.admin import create_topics
from charger_tools.bench.proc import cpu_seconds, read_json, say, write_json
from charger_tools.bench.runs import Env, spawn
from charger_tools.bench.workload import Workload, load_plain_accounts, plain_key, start_group
from charger_tools.processes import stop_process
from charger_topics import names
from charger_topics.names import TopicSpec

# The limit's debit: every event of a batch in one call, one HINCRBY each.
DEBIT_BATCH = """
local amount = ARGV[1]
for i = 1, #KEYS do redis.call('HINCRBY', KEYS[i], 'bal', amount) end
return #KEYS
"""

FAUST_LEDGER = "bench.faust-ledger"


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
        "events_per_cpu_s": round(seen / (cpu1["worker"] - cpu0["worker"]), 1),
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
        "datadir": str(env.workdir / f"{group}-data"),  # removed with the workdir
        "accounts": w.account_plans,
    }
    spec_path = env.workdir / f"{group}.spec.json"
    write_json(spec_path, spec)
    target = min(len(w.events), cap_events) if cap_events > 0 else len(w.events)
    proc = spawn(
        ["-m", "charger_tools.bench.faust_agent", str(spec_path)],
        dict(os.environ),
        env.workdir / f"{group}.log",
    )
    try:
        doc = await _follow_faust(stats, proc, target, cap_s)
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
        "awaiting_redis_s": doc["redis_s"],
        "awaiting_send_s": doc["send_s"],
        "progress": doc["timeline"],  # (seconds since its first event, events)
        "events_per_cpu_s": round(doc["per_cpu_s"], 1) if doc["per_cpu_s"] else None,
    }


async def _follow_faust(
    stats: Path, proc: subprocess.Popen[bytes], target: int, cap_s: float
) -> dict[str, Any]:
    """Poll the agent's progress until it reached `target` events or ran `cap_s` seconds."""
    deadline = time.monotonic() + 120 + cap_s  # joins and startup included
    doc: dict[str, Any] | None = None
    timeline: list[tuple[float, int]] = []
    cpu0: tuple[float, int] | None = None  # (process CPU, events) when first seen working
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if proc.poll() is not None:
            raise RuntimeError(f"faust agent exited with {proc.returncode}")
        doc = read_json(stats)
        if doc is None or doc["first"] is None:
            continue
        if cpu0 is None:
            cpu0 = (cpu_seconds(proc.pid) or 0.0, int(doc["count"]))
        since = time.monotonic() - doc["first"]
        if not timeline or since - timeline[-1][0] >= 10:
            timeline.append((round(since, 1), int(doc["count"])))
            say(f"faust_agent: {doc['count']} events after {since:.0f}s")
        if doc["count"] >= target or since >= cap_s:
            await asyncio.sleep(0.6)  # one more progress write
            final = read_json(stats) or doc
            cpu = (cpu_seconds(proc.pid) or 0.0) - cpu0[0]
            per_cpu = (int(final["count"]) - cpu0[1]) / cpu if cpu > 0 else None
            return {**final, "timeline": timeline, "per_cpu_s": per_cpu}
    raise TimeoutError(f"the faust agent did not finish: {doc}")
