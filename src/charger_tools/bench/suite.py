"""Runs the chosen benchmarks in one go and assembles the report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charger.kafka.admin import create_topics
from charger.settings import Settings
from charger_tools.apache_kafka import start_kafka
from charger_tools.bench.baselines import run_faust, run_limit
from charger_tools.bench.latency import run_latency
from charger_tools.bench.proc import say
from charger_tools.bench.replicated import run_replicated
from charger_tools.bench.report import build_report
from charger_tools.bench.runs import Env, drop_prefixes, run_charger
from charger_tools.bench.tick import run_tick
from charger_tools.bench.workload import generate, produce
from charger_tools.embedded import start_broker, start_redis, tansu_settings
from charger_tools.topology import DATA_NODE_OPTIONS
from charger_topics import names

ALL = ("charger", "charger_scaled", "faust_agent", "limit", "latency", "tick")
# Asked for by name only: a replica and the charger and latency runs again, about a minute.
OPTIONAL = ("charger_replicated",)
KNOWN = (*ALL, *OPTIONAL)
NEEDS_EVENTS = ("charger", "charger_scaled", "faust_agent", "limit", "latency", *OPTIONAL)


@dataclass
class Options:
    events: int = 200_000
    only: tuple[str, ...] = ALL
    batch_max_records: int = 5000
    batch_timeout_ms: int = 50
    scaled_workers: int = 0  # 0: one per core (at least 2)
    faust_seconds: float = 120.0
    faust_events: int = 0
    latency_rate: int = 5000
    latency_seconds: float = 10.0
    tick_calls: int = 100_000
    tick_seconds: float = 30.0
    profile: str = ""
    seed: int = 7
    broker: str = "tansu"  # the embedded broker: tansu, or kafka (Apache Kafka, one node)


@contextlib.contextmanager
def servers(workdir: Path, broker_kind: str = "tansu") -> Iterator[Env]:
    """The given servers (CHARGER_KAFKA_BOOTSTRAP / CHARGER_REDIS_URL), or embedded ones:
    Tansu, or with `broker_kind` "kafka" one Apache Kafka node."""
    s = Settings()
    with contextlib.ExitStack() as stack:
        env = Env(s.kafka_bootstrap, s.redis_dsn(), workdir)
        if not env.bootstrap and broker_kind == "kafka":
            kafka = stack.enter_context(start_kafka(1))
            env.bootstrap, env.pids["broker"] = kafka.bootstrap, kafka.nodes[0].pid
            env.broker = f"Apache Kafka {kafka.version} (KRaft, one node)"
        elif not env.bootstrap:
            broker = start_broker()
            stack.callback(broker.stop)
            stack.enter_context(tansu_settings())
            env.bootstrap, env.pids["broker"] = broker.address, broker.pid
            env.broker = "Tansu (embedded, in memory)"
        if not env.redis_url:
            valkey = start_redis(extra=DATA_NODE_OPTIONS)  # a replica may join at once
            stack.callback(valkey.stop)
            env.redis_url, env.pids["redis"] = valkey.address, valkey.pid
        yield env


async def run_suite(opts: Options, env: Env) -> dict[str, Any]:
    chosen = set(opts.only)
    scaled = opts.scaled_workers or min(8, max(2, os.cpu_count() or 1))
    runs: dict[str, dict[str, Any] | None] = {}
    latency = tick = replicated = None
    extra: dict[str, Any] = {}
    if chosen & set(NEEDS_EVENTS):
        await create_topics(env.bootstrap, names.TOPICS.values())
        timed = {"latency", "charger_replicated"} & chosen
        n_extra = int(opts.latency_rate * opts.latency_seconds) if timed else 0
        t = time.monotonic()
        w = generate(opts.events, n_extra, seed=opts.seed)
        say(f"generated {len(w.events)} events (+{len(w.extra)}) in {time.monotonic() - t:.1f}s")
        produce_rate = await produce(w, env.bootstrap)
        say(f"produced {len(w.accounts)} account records, events at {produce_rate:,.0f}/s")
        extra["workload"] = {
            "accounts": len(w.account_plans),
            "account_records": len(w.accounts),
            "events": len(w.events),
            "mix": w.mix(),
            "simulated_seconds": w.span_s,
            "produce_events_per_s": round(produce_rate, 1),
        }
        if "charger" in chosen:
            r = runs["charger"] = await run_charger(
                env, w, opts.batch_max_records, opts.batch_timeout_ms, opts.profile
            )
            say(f"charger: {r['events_per_s']:,.0f} events/s")
        if "charger_scaled" in chosen:
            r = runs["charger_scaled"] = await run_charger(
                env, w, opts.batch_max_records, opts.batch_timeout_ms, workers=scaled
            )
            say(f"charger, {scaled} processes: {r['events_per_s']:,.0f} events/s")
        if "limit" in chosen:
            r = runs["limit"] = await run_limit(env, w, opts.batch_max_records)
            say(f"limit: {r['events_per_s']:,.0f} events/s")
        if "faust_agent" in chosen:
            r = runs["faust_agent"] = await run_faust(env, w, opts.faust_seconds, opts.faust_events)
            say(f"faust_agent: {r['events_per_s']} events/s over {r['events']} events")
        if "latency" in chosen:
            latency = await run_latency(
                env,
                w,
                opts.latency_rate,
                opts.latency_seconds,
                opts.batch_max_records,
                opts.batch_timeout_ms,
            )
            say(f"latency: {latency['latency_ms']}")
        if "charger_replicated" in chosen:
            replicated = await run_replicated(
                env,
                w,
                (opts.batch_max_records, opts.batch_timeout_ms),
                (opts.latency_rate, opts.latency_seconds),
            )
    if "tick" in chosen:
        tick = await run_tick(env, opts.tick_calls, opts.tick_seconds, seed=opts.seed)
        say(f"tick: {tick['tick_wall_ms_p50']} ms p50, worker {tick['cpu_share_worker']:.1%}")
    if "redis" not in env.pids:
        dropped = await drop_prefixes(env.redis_url, env.prefixes)
        say(f"dropped the {dropped} Redis keys the runs wrote")
    s = Settings()
    settings = {
        "batch_max_records": opts.batch_max_records,
        "batch_timeout_ms": opts.batch_timeout_ms,
        "partitions": s.partitions,
        "tick_ms": s.tick_ms,
        "tick_max_sessions": s.tick_max_sessions,
        "hold_interval_s": s.hold_interval_s,
        "latency_rate_per_s": opts.latency_rate,
        "latency_seconds": opts.latency_seconds,
        "faust_cap_seconds": opts.faust_seconds,
        "scaled_workers": scaled if "charger_scaled" in chosen else None,
        "servers": "embedded" if env.pids else "given",
        "broker": env.broker,
    }
    return build_report(
        events=opts.events,
        runs=runs,
        latency=latency,
        tick=tick,
        settings=settings,
        nproc=os.cpu_count() or 1,
        extra=extra,
        replicated=replicated,
    )


def main(opts: Options) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="charger-bench-"))
    try:
        with servers(workdir, opts.broker) as env:
            return asyncio.run(run_suite(opts, env))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
