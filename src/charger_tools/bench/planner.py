"""CPU of the charging core alone: ``Planner.prepare`` and ``Planner.plan``, no servers.

``python -m charger_tools.bench.planner --events 100000`` (or ``charger bench --only planner``)
plays the benchmark's switch mix as in-memory records, accounts first, then the events in
batches of 5,000. Reads are answered by :class:`MemoryRedis`, which keeps what apply.lua
would have stored of each planned operation (seen ids, account settings, call sessions,
recharge requests), so duplicates, late starts and parked ends take their real paths.
Only the two planner steps are timed, in CPU time; the best repetition counts.

The digest covers every planned argument, key, count and refusal: a change that keeps it
keeps the core's behaviour on this workload.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b

import msgpack  # type: ignore[import-untyped]
import orjson

from charger.charging.planner import Outcome, Planner, Prepared
from charger.charging.records import AccountInfo, CallRate, CallState, Inbound, Reads
from charger.events.timefmt import parse_time_ms
from charger.protocol.fields import CallStatus, request_state
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import (
    ParkEnd,
    RechargeResult,
    Refuse,
    SettleCall,
    StartCall,
    Tick,
    UpsertAccount,
)
from charger.rating import Increments, VoiceRate, load_plan_versions
from charger.rating.versions import by_id
from charger.runtime import default_plans_path
from charger.settings import Settings

# state, direction, from, to, answer ms, duration ms, end id, end time, then the stored
# rate: per minute, connect fee, increments, prefix, plan id ("": none), plan version.
_CallTuple = tuple[str, str, str, str, int, int, str, str, int, int, int, int, str, str, int]
_NO_RATE = (0, 0, 0, 0, "", "", 0)
START_MS = parse_time_ms("2026-11-22T10:00:00.000Z")  # fixed: the same bytes every run


@dataclass(slots=True)
class MemoryRedis:
    """What apply.lua leaves behind of planned operations, enough to answer read.lua."""

    seen: dict[str, bytes] = field(default_factory=dict)
    accounts: dict[str, AccountInfo] = field(default_factory=dict)
    # Call fields as a tuple: plain values are invisible to the garbage collector, which
    # would otherwise charge the planner for scanning state the worker keeps in Redis.
    calls: dict[str, _CallTuple] = field(default_factory=dict)
    requests: dict[tuple[str, str], str] = field(default_factory=dict)

    def read(self, p: Prepared) -> Reads:
        seen, calls, reqs = self.seen.get, self.calls.get, self.requests.get
        return Reads(
            seen={k: seen(k) for keys in p.seen_keys.values() for k in keys},
            accounts={k: self.accounts.get(k) for k in p.account_keys},
            calls={k: _call(calls(k)) for k in p.call_keys},
            requests={w: reqs(w) for w in p.request_fields},
        )

    def apply(self, out: Outcome) -> None:
        for op in out.plan.all_ops():
            kind = type(op)
            if kind is Refuse or kind is Tick:
                continue
            self.seen[op.seen_key] = op.fingerprint.encode()  # type: ignore[union-attr]
            if type(op) is UpsertAccount:
                info = AccountInfo(op.currency, op.rate_plan, op.credit_limit_micros)
                self.accounts[op.account_key] = info
            elif type(op) is StartCall:
                rate = (
                    op.price_per_minute_micros,
                    op.connect_fee_micros,
                    op.first_increment_s,
                    op.next_increment_s,
                )
                stored = (op.prefix, op.rate_plan, op.rate_plan_version)
                self.calls[op.call_key] = (
                    CallStatus.ACTIVE,
                    op.direction,
                    op.number_from,
                    op.number_to,
                    op.answered_at_ms,
                    0,
                    "",
                    "",
                    *rate,
                    *stored,
                )
            elif type(op) is SettleCall:
                self.calls[op.call_key] = (CallStatus.ENDED, "", "", "", 0, 0, "", "", *_NO_RATE)
            elif type(op) is ParkEnd:
                parked = (CallStatus.PENDING_END, "", "", "", 0, op.duration_ms, op.end_id)
                self.calls[op.call_key] = (*parked, op.end_time, *_NO_RATE)
            elif type(op) is RechargeResult:
                self.requests[(op.account_key, request_state(op.request_id))] = op.status


def _call(fields: _CallTuple | None) -> CallState | None:
    if fields is None:
        return None
    per_minute, connect_fee, first_increment, next_increment = fields[8:12]
    prefix, plan_id, version = fields[12:]
    rate = None
    if plan_id:
        increments = Increments(first_increment, next_increment)
        voice = VoiceRate(prefix, fields[1], per_minute, connect_fee, increments)
        rate = CallRate(plan_id, version, voice)
    return CallState(*fields[:8], rate=rate)


def inbound(records: Sequence[tuple[str, bytes | None, bytes]], partitions: int) -> list[Inbound]:
    """Records as the worker fetches them: on their key's default partition, in order."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, key, value in records:
        part = slot_of(key.decode(errors="replace"), partitions) if key else 0
        off = offsets.get((topic, part), 0)
        offsets[(topic, part)] = off + 1
        out.append(Inbound(topic, part, off, key, value))
    return out


@dataclass(slots=True)
class Timing:
    prepare_ns: int = 0
    plan_ns: int = 0
    digest: str = ""


def run_once(
    accounts: list[Inbound], events: list[Inbound], keys: Keys, batch: int = 5000
) -> Timing:
    """One fresh worker: load the accounts (untimed), then time the events' batches."""
    plans = by_id(load_plan_versions(default_plans_path()))  # as the worker's plan book
    planner = Planner(keys, lambda: plans)
    redis = MemoryRedis()
    for i in range(0, len(accounts), batch):
        prepared = planner.prepare(accounts[i : i + batch])
        redis.apply(planner.plan(prepared, redis.read(prepared)))
    t, h = Timing(), blake2b(digest_size=16)
    clock = time.process_time_ns
    gc.collect()
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        t0 = clock()
        prepared = planner.prepare(chunk)
        t1 = clock()
        reads = redis.read(prepared)
        t2 = clock()
        out = planner.plan(prepared, reads)
        t3 = clock()
        t.prepare_ns += t1 - t0
        t.plan_ns += t3 - t2
        redis.apply(out)
        for slot, sb in sorted(out.plan.slots.items()):
            values, op_keys = sb.encode()
            h.update(msgpack.packb([slot, values, op_keys, len(sb.ops)], use_bin_type=True))
        h.update(orjson.dumps(sorted(out.results.items()) + sorted(out.dlq.items())))
    t.digest = h.hexdigest()
    return t


def main(argv: Sequence[str] | None = None) -> int:
    from charger_tools.bench.workload import generate  # imports the Kafka and Redis clients

    p = argparse.ArgumentParser(prog="python -m charger_tools.bench.planner", description=__doc__)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5, help="repetitions; the best one counts")
    p.add_argument("--batch", type=int, default=5000, help="records per batch")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    w = generate(a.events, 0, seed=a.seed, start_ms=START_MS)
    keys = Keys("bench", Settings().partitions)
    accounts = inbound([(r.topic, r.key, r.value) for r in w.accounts], keys.slots)
    events = inbound([(r.topic, r.key, r.value) for r in w.events], keys.slots)
    # The worker holds one batch at a time: the whole workload is kept out of the collector.
    gc.collect()
    gc.freeze()
    best: Timing | None = None
    for n in range(a.repeat):
        t = run_once(accounts, events, keys, a.batch)
        print(f"run {n + 1}: prepare {_us(t.prepare_ns, events)}, plan {_us(t.plan_ns, events)}")
        if best is None or t.prepare_ns + t.plan_ns < best.prepare_ns + best.plan_ns:
            best = t
        if t.digest != best.digest:
            raise SystemExit("the planner's output changed between runs")
    assert best is not None
    total = best.prepare_ns + best.plan_ns
    print(f"{len(events)} events ({len(accounts)} account records), batches of {a.batch}")
    print(f"best of {a.repeat} (CPU µs/event):")
    print(f"  prepare {_us(best.prepare_ns, events)}")
    print(f"  plan    {_us(best.plan_ns, events)}")
    print(f"  total   {_us(total, events)}  = {len(events) / total * 1e9:,.0f} events/s")
    print(f"  output digest {best.digest}")
    return 0


def _us(ns: int, events: list[Inbound]) -> str:
    return f"{ns / 1000 / len(events):6.2f} µs"


if __name__ == "__main__":
    raise SystemExit(main())
