"""What the chaos run plays and when it strikes: pure and deterministic for a seed.

Three parts: the traffic configuration handed to the simulated switch, the cutoff cohort
(accounts whose single call either outlives its money or ends well before it runs out,
so the checker knows exactly which calls must be cut and when), and the fault schedule
(worker kills, the Redis restart, a second worker joining and leaving), placed at
progress points of the stream rather than at wall-clock times so that a slow machine
meets the same faults at the same place in the stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from charger.events.timefmt import format_time_ms
from charger_tools.simulate import SimConfig, SimRecord
from charger_topics import names

# A cluster spreads charger's slots (one per partition) over its three primaries by hash
# tag: 24 gives each primary several, as the README asks of a deployment (more
# partitions than primaries), and one failover then strikes a third of the accounts.
CLUSTER_PARTITIONS = 24

# Cohort calls are outbound to the US on std-usd: $0.60 a minute in 1 s increments, so
# one second of talk costs exactly this many micro-units and no connect fee applies.
COHORT_PLAN = "std-usd"
COHORT_MICROS_PER_S = 10_000
COHORT_DESTINATION = "+12125550100"


@dataclass(frozen=True)
class ChaosConfig:
    """Shape of one chaos run."""

    events: int = 100_000
    kills: int = 10
    accounts: int = 1000
    rate_per_s: float = 300.0  # input records per second, open loop
    seed: int = 11
    redis_restarts: int = 1
    redis_rollbacks: int = 0  # Redis goes back to its state of a few seconds before
    redis_failovers: int = 0  # the primary SIGKILLed, its replica promoted
    redis_cluster: bool = False  # a six-node Redis Cluster instead of one server
    second_worker: bool = True
    duplicate_fraction: float = 0.05
    malformed_fraction: float = 0.004
    conflict_fraction: float = 0.002
    topup_fraction: float = 0.01  # manual top-ups, as a share of input records
    fee_fraction: float = 0.004  # fees and adjustments, as a share of input records
    broker_kills: int = 0  # a broker of a Kafka cluster SIGKILLed and restarted

    def __post_init__(self) -> None:
        if self.events < 1000:
            raise ValueError("events must be at least 1000")
        if not 10 <= self.accounts <= 9999:
            raise ValueError("accounts must be within 10..9999")
        if self.kills < 0 or self.rate_per_s <= 0:
            raise ValueError("kills must be >= 0 and the rate > 0")
        if min(self.redis_restarts, self.redis_rollbacks, self.redis_failovers) < 0:
            raise ValueError("Redis fault counts must be >= 0")

    @property
    def redis_mode(self) -> str:
        """What Redis the run stands on: ``single`` (one durable server), ``sentinel``
        (a primary, a replica, three Sentinels: failovers need someone to promote) or
        ``cluster`` (three primaries with a replica each)."""
        if self.redis_cluster:
            return "cluster"
        return "sentinel" if self.redis_failovers else "single"

    @property
    def planned_restarts(self) -> int:
        """Redis restarts the plan holds: only a single server restarts in place. A primary
        SIGKILLed under Sentinels or in a cluster is failed over (its replica takes its
        place, and it comes back as a replica): that is the failover fault, not a restart
        from its own disk, so there the failovers stand in for the restart."""
        return self.redis_restarts if self.redis_mode == "single" else 0

    @property
    def window_s(self) -> float:
        """How long the stream takes to play at the configured rate."""
        return self.events / self.rate_per_s

    def cohort_size(self) -> int:
        return max(10, self.accounts // 10)

    def switch_config(self, start_ms: int) -> SimConfig:
        """Traffic for the general accounts: short calls, so every call ends within the run."""
        r = self.rate_per_s
        longest = max(5.0, self.window_s * 0.3)
        return SimConfig(
            accounts=self.accounts,
            seed=self.seed,
            start_ms=start_ms,
            call_rate_per_s=r * 0.24,
            mean_call_s=min(20.0, longest / 3),
            call_sigma=0.9,
            max_call_s=longest,
            sms_rate_per_s=r * 0.3,
            ring_through_rate_per_s=r * 0.03,
            duplicate_fraction=self.duplicate_fraction,
            malformed_fraction=self.malformed_fraction,
            conflict_fraction=self.conflict_fraction,
            duplicate_max_delay_s=min(30.0, self.window_s * 0.2),
            small_accounts=max(5, self.accounts // 50),
        )


@dataclass(frozen=True)
class CohortCall:
    """One cohort account and its single call; `doomed` calls outlive their money."""

    account: str
    opening_micros: int
    call_id: str
    start_offset_ms: int  # from the start of the stream
    duration_ms: int
    doomed: bool

    @property
    def affordable_ms(self) -> int:
        return self.opening_micros // COHORT_MICROS_PER_S * 1000


# A doomed call stays up this much longer than its money lasts: longer than a worker takes
# to be replaced after a SIGKILL (the dead member's session timeout, then a rebalance), so
# a cutoff is still due when the new owner of the partition gets to it. A call that ends
# while no worker is alive cannot be cut by anyone; that is failover time, not a miss.
DOOMED_OVERRUN_S = (40, 60)
# A safe call ends at least this long before its money runs out.
SAFE_SPARE_S = 5


def cohort(cfg: ChaosConfig) -> list[CohortCall]:
    """Half the cohort's calls run past their money, half end at least 5 s before it runs
    out: the run's producer may fall that far behind before a safe call's end reaches the
    broker too late to spare it (the checker counts a cut of a safe call as spurious)."""
    rng = random.Random(f"cohort-{cfg.seed}")
    window_ms = int(cfg.window_s * 1000)
    hi = max(6, int(cfg.window_s * 0.2))
    lo = max(3, hi // 3)
    out = []
    for n in range(cfg.cohort_size()):
        affordable_s = rng.randint(lo, hi)
        doomed = n % 2 == 0
        if doomed:
            duration_s = affordable_s + rng.randint(*DOOMED_OVERRUN_S)
        else:
            spare_s = rng.randint(SAFE_SPARE_S, max(SAFE_SPARE_S + 1, hi // 2))
            # Little money would leave even a 1 s call less spare: give it more. The call
            # lasts whole seconds plus up to 999 ms, so one more second is kept spare.
            affordable_s = max(affordable_s, spare_s + 2)
            duration_s = affordable_s - spare_s - 1
        out.append(
            CohortCall(
                account=f"cut-{cfg.seed}-{n + 1:04d}",
                opening_micros=affordable_s * COHORT_MICROS_PER_S,
                call_id=f"cutcall-{cfg.seed}-{n + 1}",
                start_offset_ms=rng.randint(window_ms // 20, window_ms // 2),
                duration_ms=duration_s * 1000 + rng.randint(0, 999),
                doomed=doomed,
            )
        )
    return out


def _record(topic: str, doc: dict[str, Any]) -> SimRecord:
    return SimRecord(topic, doc["account"].encode(), orjson.dumps(doc), "good")


def cohort_setup(calls: list[CohortCall], at_ms: int) -> list[SimRecord]:
    """Settings and opening credit of every cohort account (no auto-recharge, no credit)."""
    out = []
    for c in calls:
        t = format_time_ms(at_ms)
        upsert = {
            "id": f"up-{c.account}",
            "type": "account.upserted",
            "account": c.account,
            "time": t,
            "currency": "USD",
            "rate_plan": COHORT_PLAN,
            "credit_limit_micros": 0,
            "notify_email": f"billing+{c.account}@example.com",
        }
        credit = {
            "id": f"open-{c.account}",
            "type": "balance.credited",
            "account": c.account,
            "time": t,
            "amount_micros": c.opening_micros,
            "reference": f"OPEN-{c.account}",
        }
        out += [_record(names.BILLING_ACCOUNTS, upsert), _record(names.BILLING_ACCOUNTS, credit)]
    return out


def cohort_events(c: CohortCall, start_ms: int) -> list[tuple[int, SimRecord]]:
    """The call's start and end, each with the wall-clock instant it is due."""
    answer = start_ms + c.start_offset_ms
    end = answer + c.duration_ms
    leg = {"direction": "outbound", "from": "+13055550123", "to": COHORT_DESTINATION}
    started = {
        "id": f"{c.call_id}-start",
        "type": "call.started",
        "account": c.account,
        "time": format_time_ms(answer),
        "call_id": c.call_id,
        **leg,
    }
    ended = {
        "id": f"{c.call_id}-end",
        "type": "call.ended",
        "account": c.account,
        "time": format_time_ms(end),
        "call_id": c.call_id,
        "duration_ms": c.duration_ms,
        **leg,
    }
    rec = names.TELEPHONY_EVENTS
    return [(answer, _record(rec, started)), (end, _record(rec, ended))]


@dataclass(frozen=True)
class Fault:
    """One planned fault: what, and at which share of the stream (0..1) it strikes."""

    at: float
    # kill | redis_restart | redis_remember | redis_rollback | redis_failover | join | leave
    # | broker_kill
    action: str


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)

    def due(self, progress: float) -> list[Fault]:
        """Faults whose point has been reached, removed from the plan."""
        ready = [f for f in self.faults if f.at <= progress]
        self.faults = [f for f in self.faults if f.at > progress]
        return ready


def fault_plan(cfg: ChaosConfig) -> FaultPlan:
    """Kills at random points spread over the stream, one Redis restart (a single server)
    or the Redis failovers, the rollbacks, a join and a leave.

    Kill points are drawn one per equal stretch of the stream, so a restarted worker always
    gets some of the stream before the next kill.
    """
    rng = random.Random(f"faults-{cfg.seed}")
    faults = []
    span = 0.9 / max(1, cfg.kills)
    for i in range(cfg.kills):
        faults.append(Fault(0.05 + span * i + rng.uniform(0.1, 0.9) * span, "kill"))
    for _ in range(cfg.planned_restarts):
        faults.append(Fault(rng.uniform(0.4, 0.6), "redis_restart"))
    for n in range(cfg.redis_rollbacks):
        # Remembered at one point, gone back to later: what was written between is lost,
        # as a failover to a replica that far behind would lose it.
        at = 0.15 + 0.7 * (n + rng.uniform(0.2, 0.6)) / cfg.redis_rollbacks
        faults.append(Fault(at, "redis_remember"))
        faults.append(Fault(at + 0.03, "redis_rollback"))
    for n in range(cfg.redis_failovers):
        # One per equal stretch of 0.1..0.9, mid-stretch: promotions and rejoins take
        # seconds, and Sentinels refuse a second failover of one master within twice
        # their failover timeout, so failovers must not bunch up.
        span = 0.8 / cfg.redis_failovers
        faults.append(Fault(0.1 + span * (n + rng.uniform(0.3, 0.7)), "redis_failover"))
    for n in range(cfg.broker_kills):
        # One per equal stretch of 0.1..0.9: a restarted broker rejoins before the next.
        span = 0.8 / cfg.broker_kills
        faults.append(Fault(0.1 + span * (n + rng.uniform(0.2, 0.8)), "broker_kill"))
    if cfg.second_worker:
        faults.append(Fault(rng.uniform(0.2, 0.3), "join"))
        faults.append(Fault(rng.uniform(0.7, 0.8), "leave"))
    return FaultPlan(sorted(faults, key=lambda f: f.at))
