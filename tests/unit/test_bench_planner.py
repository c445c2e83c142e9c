"""The planner micro-benchmark: its in-memory Redis and a small run."""

from __future__ import annotations

from charger.charging.planner import Planner
from charger.protocol.keys import Keys
from charger.rating import load_plans
from charger.runtime import default_plans_path
from charger_tools.bench import planner as bp
from charger_tools.bench.workload import generate


def test_small_run_is_deterministic_and_takes_the_real_paths() -> None:
    w = generate(3000, 0, seed=3, start_ms=bp.START_MS)
    keys = Keys("bench", 8)
    accounts = bp.inbound([(r.topic, r.key, r.value) for r in w.accounts], keys.slots)
    events = bp.inbound([(r.topic, r.key, r.value) for r in w.events], keys.slots)
    first = bp.run_once(accounts, events, keys, batch=500)
    again = bp.run_once(accounts, events, keys, batch=500)
    assert first.digest == again.digest
    assert first.prepare_ns > 0 and first.plan_ns > 0


def test_memory_redis_remembers_what_apply_would() -> None:
    keys = Keys("bench", 8)
    w = generate(1000, 0, seed=5, start_ms=bp.START_MS)
    accounts = bp.inbound([(r.topic, r.key, r.value) for r in w.accounts], keys.slots)
    events = bp.inbound([(r.topic, r.key, r.value) for r in w.events], keys.slots)
    plans = load_plans(default_plans_path())
    redis = bp.MemoryRedis()
    planner = Planner(keys, lambda: plans)
    for batch in (accounts, events):
        prepared = planner.prepare(batch)
        redis.apply(planner.plan(prepared, redis.read(prepared)))
    assert len(redis.accounts) == len(w.account_plans)
    assert {c[0] for c in redis.calls.values()} >= {"active", "ended"}
    # Played again, every record is a duplicate: nothing is planned but refusals.
    fresh = Planner(keys, lambda: plans, dict(planner.accounts))
    prepared = fresh.prepare(events)
    out = fresh.plan(prepared, redis.read(prepared))
    assert sum(n for (_, result), n in out.results.items() if result != "duplicate") == 0
