"""`charger chaos`: play a long stream while faults strike, then check every invariant.

The run owns its servers: an embedded broker and a Redis of the kind asked for
(`charger_tools.chaos.backends`): one Valkey with its append-only file fsynced on every
write, so that Redis can be SIGKILLed and restarted from disk; a primary and replica
behind Sentinels; or a six-node cluster. The worker runs as real `charger worker`
processes; the run SIGKILLs and restarts the main one at planned points of the stream,
restarts Redis once or fails it over, makes it forget (`charger_tools.chaos.redis_faults`),
and lets a second worker join and leave the consumer group. A payment service answers
recharge requests as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from charger.connections import close_redis
from charger.events.timefmt import format_time_ms
from charger.kafka.admin import create_topics
from charger.protocol.keys import Keys
from charger_tools.catchup import behind
from charger_tools.chaos.backends import REDIS_SETTINGS, RedisBackend
from charger_tools.chaos.billing import billing_setup, fee_or_adjustment
from charger_tools.chaos.checker import check, expectations
from charger_tools.chaos.collect import observe
from charger_tools.chaos.procs import Workers
from charger_tools.chaos.progress import Progress
from charger_tools.chaos.redis_faults import RedisFaults
from charger_tools.chaos.workload import (
    ChaosConfig,
    CohortCall,
    Fault,
    cohort,
    cohort_events,
    cohort_setup,
    fault_plan,
)
from charger_tools.demo.payments import Payments
from charger_tools.demo.tail import OutputTail
from charger_tools.embedded import EmbeddedServer
from charger_tools.processes import stop_process
from charger_tools.simulate import SimRecord, Switch, account_profiles, account_records
from charger_tools.simulate.produce import plan_records
from charger_topics import names

STEP_S = 0.05
BROKER_DOWN_S = 5.0
REDIS_FAULTS = ("redis_restart", "redis_remember", "redis_rollback", "redis_failover")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_partitions(backend: RedisBackend) -> int:
    """Partitions of the run's co-partitioned topics, and so of charger's Redis slots."""
    return backend.partitions or int(os.environ.get("CHARGER_PARTITIONS", names.DEFAULT_PARTITIONS))


def topic_marks(partitions: int) -> dict[TopicPartition, int]:
    """Offset 0 of every partition of every topic (a topic the contract pins to one
    partition keeps it; every other has the run's count)."""
    return {
        TopicPartition(topic, p): 0
        for topic, spec in names.TOPICS.items()
        for p in range(1 if spec.partitions == 1 else partitions)
    }


class ChaosRun:
    """One run: its stream, its faults, its workers, and the truth the checker needs."""

    def __init__(
        self,
        cfg: ChaosConfig,
        bootstrap: str,
        backend: RedisBackend,
        brokers: Sequence[EmbeddedServer] = (),
    ) -> None:
        self.cfg = cfg
        self.bootstrap = bootstrap
        # The nodes of a Kafka cluster the run may kill (none: one broker, never killed).
        self.brokers = list(brokers)
        self.broker_kills = 0
        self.scheduled_ids: set[str] = set()  # the fees the subscriptions must make
        uid = uuid.uuid4().hex[:6]
        self.prefix, self.group = f"chaos{uid}", f"charger-chaos-{uid}"
        self.partitions = run_partitions(backend)
        self.keys = Keys(self.prefix, self.partitions)
        self.redis = backend.client()
        self.redis_faults = RedisFaults(backend, self.redis, self.prefix, self.keys)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=False
        )
        self.logdir = Path(tempfile.mkdtemp(prefix="charger-chaos-"))
        env = {k: v for k, v in os.environ.items() if k not in REDIS_SETTINGS}
        env.update(
            CHARGER_KAFKA_BOOTSTRAP=bootstrap,
            CHARGER_REDIS_PREFIX=self.prefix,
            CHARGER_GROUP_ID=self.group,
            CHARGER_PARTITIONS=str(self.partitions),
            **backend.worker_env(),
        )
        self.workers = Workers(env, self.logdir)
        self.rng = random.Random(f"run-{cfg.seed}")
        self.cohort: list[CohortCall] = cohort(cfg)
        self.good: list[bytes] = []  # every valid record sent, resends included
        self.events = 0
        self.by_kind: dict[str, int] = {}
        self.produced: dict[TopicPartition, int] = {}
        self.faults_done: list[str] = []
        self.unhealthy: dict[str, int] = {}  # worker -> /health checks that said 503
        self._background: set[asyncio.Task[None]] = set()
        # What the last look while settling saw, for the progress lines.
        self.behind = -1  # input records not committed plus unrelayed outputs (-1: unknown)
        self.open_sessions = 0
        self.payments_pending = False
        self.faults_planned = len(fault_plan(cfg).faults)
        self.cohort_due = 0

    # ---- producing ----
    async def send(self, records: list[SimRecord], counted: bool = True) -> None:
        """Produce `records`; `counted` ones are events of the stream the checker knows."""
        if not records:
            return
        futs = [await self.producer.send(r.topic, r.value, key=r.key) for r in records]
        for md in await asyncio.gather(*futs):
            tp = TopicPartition(md.topic, md.partition)
            self.produced[tp] = max(self.produced.get(tp, 0), md.offset + 1)
        for r in records if counted else ():
            if r.topic == names.RATE_PLANS:
                continue
            self.events += 1
            self.by_kind[r.kind] = self.by_kind.get(r.kind, 0) + 1
            if r.kind in ("good", "duplicate"):
                self.good.append(r.value)

    async def prepare(self) -> None:
        # On a Kafka cluster the topics are replicated as in production: a broker may die.
        replicated = len(self.brokers) >= 3
        await create_topics(
            self.bootstrap,
            names.TOPICS.values(),
            self.partitions,
            replication_factor=3 if replicated else 1,
            min_insync_replicas=2 if replicated else None,
        )
        await self.producer.start()
        await self.send(plan_records())
        setup = account_records(self.cfg.switch_config(_now_ms()))
        await self.send(setup + cohort_setup(self.cohort, _now_ms()))
        profiles = [p.id for p in account_profiles(self.cfg.switch_config(0))]
        billing = billing_setup(profiles, _now_ms())
        self.scheduled_ids = billing.scheduled_ids
        await self.send(billing.records)

    # ---- progress ----
    async def lag(self) -> int:
        """Input records not committed by the group, plus unrelayed outputs."""
        return await behind(self.bootstrap, self.group, self.produced, self.redis, self.keys)

    async def wait_settled(self, payments: Payments, tail: OutputTail, timeout: float) -> bool:
        """Until nothing is behind, no session is open and the payment service is quiet."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.send(payments.step(tail.tally, _now_ms()))
            try:
                behind = await self.lag()
                pipe = self.redis.pipeline(transaction=False)
                for slot in range(self.keys.slots):
                    pipe.zcard(self.keys.sessions(slot))
                open_sessions = sum(await pipe.execute())
            except Exception:  # Redis coming back from a restart
                behind, open_sessions = 1, 0
            self.behind, self.open_sessions = behind, open_sessions
            self.payments_pending = payments.pending()
            if behind == 0 and open_sessions == 0 and not payments.pending():
                await asyncio.sleep(1.0)  # let replies to the last requests arrive
                if not payments.pending() and await self.lag() == 0:
                    return True
            await asyncio.sleep(0.25)
        return False

    # ---- faults ----
    async def strike(self, fault: Fault) -> None:
        self.faults_done.append(fault.action)
        if fault.action == "kill":
            self.workers.kill("main")
            self.workers.start("main")
        elif fault.action == "join":
            self.workers.start("second")
        elif fault.action == "leave":
            # A graceful stop takes seconds on a loaded machine. Waiting for it here held
            # the stream back: a safe call's end went out after its money ran out, and the
            # worker rightly cut it. The switch does not pause while a worker leaves.
            proc = self.workers.detach("second")
            if proc is not None:
                self._in_background(self._stop_worker(proc))
        elif fault.action in REDIS_FAULTS:
            self._in_background(self.redis_faults.strike(fault.action))
        elif fault.action == "broker_kill" and self.brokers:
            node = self.brokers[self.broker_kills % len(self.brokers)]
            self._in_background(self._restart_broker(node))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_worker(self, proc: subprocess.Popen[bytes]) -> None:
        await asyncio.to_thread(stop_process, proc)

    async def _restart_broker(self, node: EmbeddedServer) -> None:
        node.kill()
        self.broker_kills += 1
        await asyncio.sleep(BROKER_DOWN_S)  # its partitions' leaders move meanwhile
        await asyncio.to_thread(node.restart)

    # ---- the stream ----
    async def play(self, payments: Payments, tail: OutputTail) -> None:
        cfg = self.cfg
        start = _now_ms()
        switch = Switch(cfg.switch_config(start), start_ms=start)
        plan = fault_plan(cfg)
        due: list[tuple[int, SimRecord]] = sorted(
            (ev for c in self.cohort for ev in cohort_events(c, start)), key=lambda x: x[0]
        )
        resends: deque[tuple[int, SimRecord]] = deque()
        profiles = [p.id for p in account_profiles(cfg.switch_config(start))]
        general_done = False
        next_health = time.monotonic()
        while due or plan.faults or not general_done:
            now = _now_ms()
            batch: list[SimRecord] = []
            if self.events < cfg.events:
                batch += switch.advance(now)
                batch += self._topups(profiles, len(batch), now)
            elif not general_done:
                batch += switch.finish()  # the general calls end now; no new traffic
                general_done = True
            self.cohort_due = len(due)
            while due and due[0][0] <= now:
                batch.append(due.pop(0)[1])
            answers = payments.step(tail.tally, now)
            for r in answers:  # the payment service resends some of its answers
                if self.rng.random() < cfg.duplicate_fraction:
                    again = now + self.rng.randint(200, 5000)
                    resends.append((again, r._replace(kind="duplicate")))
            batch += answers
            while resends and resends[0][0] <= now:
                batch.append(resends.popleft()[1])
            await self.send(batch)
            progress = min(1.0, self.events / cfg.events)
            for fault in plan.due(progress if self.events < cfg.events else 1.0):
                await self.strike(fault)
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + 2.0
                for name in await asyncio.to_thread(self.workers.unhealthy):
                    self.unhealthy[name] = self.unhealthy.get(name, 0) + 1
            crashed = self.workers.crashed()
            if crashed:
                raise RuntimeError(f"worker {crashed} exited on its own; logs in {self.logdir}")
            await asyncio.sleep(STEP_S)
        for _, r in resends:
            await self.send([r])
        if self._background:
            await asyncio.gather(*self._background)

    def played(self) -> str:
        sent = f"{self.events}/{self.cfg.events} events sent"
        if self.events >= self.cfg.events:  # the stream is out: the cohort's calls go on
            sent = f"{self.events} events sent, {self.cohort_due} cohort call events to come"
        return f"{sent}, {len(self.faults_done)} of {self.faults_planned} faults struck"

    def settling(self) -> str:
        if self.behind < 0:
            return "looking"
        return f"{self.behind} records or outputs behind, {self.open_sessions} calls open" + (
            ", recharge answers to send" if self.payments_pending else ""
        )

    def _topups(self, accounts: list[str], n: int, now: int) -> list[SimRecord]:
        out: list[SimRecord] = []
        for _ in range(n):
            if self.rng.random() >= self.cfg.topup_fraction:
                continue
            acct = self.rng.choice(accounts)
            doc = {
                "id": f"topup-{self.cfg.seed}-{now}-{len(out)}",
                "type": "balance.credited",
                "account": acct,
                "time": format_time_ms(now),
                "amount_micros": self.rng.choice((5, 10, 20)) * 1_000_000,
                "reference": f"MANUAL-{now}",
            }
            out.append(SimRecord(names.BILLING_ACCOUNTS, acct.encode(), orjson.dumps(doc), "good"))
        for _ in range(n):
            if self.rng.random() < self.cfg.fee_fraction:
                account = self.rng.choice(accounts)
                out.append(fee_or_adjustment(self.rng, account, now, len(out)))
        return out

    async def close(self) -> None:
        self.workers.stop_all()
        await self.producer.stop()
        await close_redis(self.redis)


async def run_chaos(
    cfg: ChaosConfig,
    bootstrap: str,
    backend: RedisBackend,
    brokers: Sequence[EmbeddedServer] = (),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Play, strike, settle, check; returns the report. Progress lines go to `progress`
    (one of its own, on stderr, when none is given)."""
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        if progress is None:
            progress = stack.enter_context(Progress())
        return await _run(cfg, bootstrap, backend, brokers, progress, began)


async def _run(
    cfg: ChaosConfig,
    bootstrap: str,
    backend: RedisBackend,
    brokers: Sequence[EmbeddedServer],
    progress: Progress,
    began: float,
) -> dict[str, Any]:
    run = ChaosRun(cfg, bootstrap, backend, brokers)
    marks = topic_marks(run.partitions)
    tail = OutputTail(bootstrap, marks)
    try:
        progress.phase("creating the topics, sending the rate plans and accounts")
        await run.prepare()
        progress.phase("starting the worker, which takes the accounts on", run.settling)
        run.workers.start("main")
        await tail.start()
        declined = next(
            p.id
            for p in account_profiles(cfg.switch_config(0))
            if p.auto_recharge and p.auto_recharge["enabled"]
        )
        payments = Payments(declined)
        if not await run.wait_settled(payments, tail, timeout=120):
            raise RuntimeError(f"worker did not take the accounts on; logs in {run.logdir}")
        await run.redis_faults.count_epochs(first=True)
        played = time.monotonic()
        progress.phase("playing", run.played)
        await run.play(payments, tail)
        play_s = time.monotonic() - played
        progress.phase("settling", run.settling)
        await run.redis_faults.count_epochs(first=False)
        run.behind = -1
        settled = await run.wait_settled(payments, tail, timeout=300)
        progress.phase("stopping the workers")
        exit_codes = await asyncio.to_thread(run.workers.stop_all)
        await tail.stop()
        accounts = [p.id for p in account_profiles(cfg.switch_config(0))]
        accounts += [c.account for c in run.cohort]
        progress.phase("reading back the outputs and Redis")
        expected = expectations(run.good)
        seen = await observe(bootstrap, marks, run.redis, run.keys, accounts, expected)
        progress.phase("checking every invariant")
        report = check(expected, run.cohort, seen, run.scheduled_ids)
    finally:
        await run.close()
    return {
        "events": run.events,
        "kills": run.workers.kills,
        **report,
        "events_by_kind": run.by_kind,
        "faults": run.faults_done,
        **run.redis_faults.report(),
        "broker_kills": run.broker_kills,
        "worker_starts": run.workers.starts,
        "worker_exit_codes": exit_codes,
        "unhealthy_checks": run.unhealthy,
        "settled": settled,
        "play_seconds": round(play_s, 1),
        "seconds": round(time.monotonic() - began, 1),
        "logs": str(run.logdir),
    }
