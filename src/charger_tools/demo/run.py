"""`charger demo`: embedded broker, Redis and PostgreSQL, the real worker and ledger sink
processes, a simulated switch.

The worker and `charger ledger-sink` run as their own processes, exactly as in production;
the demo plays the switch, follows the output topics, and at the end reconciles the ledger
read back from Kafka against the balances in Redis and against the entries the sink stored
in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from charger.connections import close_redis, kafka_security, redis_client
from charger.kafka.admin import create_topics
from charger.protocol.fields import AccountField as F
from charger.protocol.keys import Keys
from charger.settings import Settings
from charger.store.client import RedisClient
from charger_tools.bench.report import percentile
from charger_tools.catchup import wait_caught_up
from charger_tools.demo.api import DemoApi
from charger_tools.demo.fees import fee_records
from charger_tools.demo.payments import Payments
from charger_tools.demo.tail import OutputTail
from charger_tools.demo.view import CLEAR, AccountRow, Frame, render
from charger_tools.embedded import embedded_stack
from charger_tools.postgres import embedded_postgres
from charger_tools.processes import stop_process
from charger_tools.simulate import (
    SimConfig,
    SimRecord,
    Switch,
    account_profiles,
    account_records,
    sample_accounts,
)
from charger_tools.simulate.produce import plan_records
from charger_topics import names


@dataclass
class DemoOptions:
    seconds: float = 0.0  # 0 = until Ctrl-C
    summary_json: str = ""
    web_port: int = 6066
    accounts: int = 50
    call_rate: float = 8.0
    seed: int = 7


class Demo:
    """One demo run against a broker and Redis (embedded or given)."""

    def __init__(
        self, opts: DemoOptions, bootstrap: str, redis_url: str, database_url: str = ""
    ) -> None:
        self.opts = opts
        uid = uuid.uuid4().hex[:6]
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            redis_prefix=f"demo{uid}",
            group_id=f"charger-demo-{uid}",
            database_url=database_url,
            sink_group_id=f"charger-demo-{uid}-ledger-sink",
        )
        self.keys = Keys(self.settings.redis_prefix, self.settings.partitions)
        # Given servers may be secured: the demo's own clients use the CHARGER_* security
        # settings too (its worker gets them through the inherited environment).
        self.security = kafka_security(self.settings)
        self.redis: RedisClient = redis_client(self.settings)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, **self.security
        )
        # The switch's clock is the wall clock: holds and cutoffs run in real time.
        self.cfg = SimConfig(
            accounts=opts.accounts,
            seed=opts.seed,
            start_ms=time.time_ns() // 1_000_000,
            call_rate_per_s=opts.call_rate,
            sms_rate_per_s=opts.call_rate / 2,
        )
        self.accounts = [
            a["account"] for a in sample_accounts(self.cfg) if a["type"] == "account.upserted"
        ]
        # One auto-recharging customer's card is declined: the one that will ask first.
        headroom = {
            p.id: p.opening_micros - int(p.auto_recharge["threshold_micros"])
            for p in account_profiles(self.cfg)
            if p.auto_recharge and p.auto_recharge["enabled"]
        }
        declined = min(headroom, key=headroom.__getitem__) if headroom else ""
        self.payments = Payments(declined)
        self.produced: dict[TopicPartition, int] = {}
        self.sent: dict[str, int] = {}
        self.logdir = Path(tempfile.mkdtemp(prefix="charger-demo-"))
        self.worker: subprocess.Popen[bytes] | None = None
        self.sink: subprocess.Popen[bytes] | None = None
        self.marks: dict[TopicPartition, int] = {}
        self.billing_page = ""  # charger api's page of the first account, once it answers

    # ---- setup ----
    async def prepare(self) -> None:
        s = self.settings
        await create_topics(s.kafka_bootstrap, names.TOPICS.values(), security=self.security)
        await self.producer.start()
        c = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.group_id,
            enable_auto_commit=False,
            **self.security,
        )
        await c.start()
        try:  # the demo's group starts at the current end: earlier runs stay out of it
            tps = [
                TopicPartition(t, p)
                for t, spec in names.TOPICS.items()
                for p in range(spec.partitions)
            ]
            self.marks = await c.end_offsets(tps)
            inputs = {
                tp: OffsetAndMetadata(o, "")
                for tp, o in self.marks.items()
                if tp.topic in names.CO_PARTITIONED
            }
            c.assign(list(inputs))
            await c.commit(inputs)
        finally:
            await c.stop()
        if s.database_dsn():
            await self._start_sink_group_at_marks()
        await self._publish_plans()
        await self._send(account_records(self.cfg))
        await self._send(fee_records(account_profiles(self.cfg), time.time_ns() // 1_000_000))

    async def _start_sink_group_at_marks(self) -> None:
        """The sink stores this run's entries: its group starts where the ledger stands."""
        s = self.settings
        c = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.sink_group_id,
            enable_auto_commit=False,
            **self.security,
        )
        await c.start()
        try:
            ledger = {
                tp: OffsetAndMetadata(o, "")
                for tp, o in self.marks.items()
                if tp.topic == names.LEDGER
            }
            c.assign(list(ledger))
            await c.commit(ledger)
        finally:
            await c.stop()

    async def _publish_plans(self) -> None:
        for r in plan_records():
            await self.producer.send_and_wait(r.topic, r.value, key=r.key)

    def start_worker(self) -> None:
        env = dict(os.environ)
        env.update(
            CHARGER_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            CHARGER_REDIS_URL=self.settings.redis_dsn(),
            CHARGER_REDIS_PREFIX=self.settings.redis_prefix,
            CHARGER_GROUP_ID=self.settings.group_id,
        )
        log = open(self.logdir / "worker.log", "wb")  # noqa: SIM115 - owned by the process
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "charger",
                "worker",
                "--web-port",
                str(self.opts.web_port),
                "-l",
                "info",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_sink(self) -> None:
        """`charger ledger-sink` beside the worker, into the demo's PostgreSQL."""
        if not self.settings.database_dsn():
            return
        env = dict(os.environ)
        env.update(
            CHARGER_KAFKA_BOOTSTRAP=self.settings.kafka_bootstrap,
            CHARGER_DATABASE_URL=self.settings.database_dsn(),
            CHARGER_SINK_GROUP_ID=self.settings.sink_group_id,
        )
        log = open(self.logdir / "ledger-sink.log", "wb")  # noqa: SIM115 - owned by the process
        self.sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "charger",
                "ledger-sink",
                "--web-port",
                str(self.opts.web_port + 1),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def database_entries(self, ids: set[str], timeout: float = 60.0) -> int | None:
        """How many of `ids` the sink has stored, once it has them all or `timeout` passed;
        None without a database."""
        if not self.settings.database_dsn():
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with await psycopg.AsyncConnection.connect(
            self.settings.database_dsn(), autocommit=True
        ) as conn:
            while True:
                try:
                    cur = await conn.execute(
                        "SELECT count(*) FROM ledger_entries WHERE entry_id = ANY(%s)",
                        (sorted(ids),),
                    )
                    row = await cur.fetchone()
                    stored = int(row[0]) if row else 0
                except psycopg.errors.UndefinedTable:
                    stored = 0  # the sink has not created its tables yet
                if stored == len(ids) or loop.time() >= deadline:
                    return stored
                if self.sink is not None and self.sink.poll() is not None:
                    return stored
                await asyncio.sleep(0.2)

    def stop_sink(self, timeout: float = 30.0) -> int | None:
        return None if self.sink is None else stop_process(self.sink, timeout)

    async def _send(self, records: list[SimRecord]) -> None:
        futs = [await self.producer.send(r.topic, r.value, key=r.key) for r in records]
        for md in await asyncio.gather(*futs):
            tp = TopicPartition(md.topic, md.partition)
            self.produced[tp] = max(self.produced.get(tp, 0), md.offset + 1)
        for r in records:
            self.sent[r.kind] = self.sent.get(r.kind, 0) + (r.topic == names.TELEPHONY_EVENTS)

    # ---- run ----
    async def play(self, tail: OutputTail, live: bool) -> float:
        switch = Switch(self.cfg, start_ms=time.time_ns() // 1_000_000)
        began = time.monotonic()
        last_view, last_ledger, last_events = began, 0, 0
        while True:
            elapsed = time.monotonic() - began
            if self.opts.seconds and elapsed >= self.opts.seconds:
                break
            batch = switch.advance(switch.start_ms + int(elapsed * 1000))
            batch += self.payments.step(tail.tally, time.time_ns() // 1_000_000)
            if batch:
                await self._send(batch)
            now = time.monotonic()
            if now - last_view >= 1.0:
                events = sum(self.sent.values())
                ledger = len(tail.tally.ledger_ids)
                frame = Frame(
                    elapsed,
                    events,
                    (events - last_events) / (now - last_view),
                    (ledger - last_ledger) / (now - last_view),
                    await self.rows(),
                    tail.tally,
                )
                if live:
                    page = f"\nbilling page: {self.billing_page}" if self.billing_page else ""
                    print(CLEAR + render(frame) + page, flush=True)
                else:
                    print(
                        f"t={elapsed:5.1f}s events={events} ledger={ledger} "
                        f"dlq={sum(tail.tally.dlq.values())}",
                        flush=True,
                    )
                last_view, last_events, last_ledger = now, events, ledger
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.worker.returncode}; see {self.logdir / 'worker.log'}"
                )
            if self.sink is not None and self.sink.poll() is not None:
                raise RuntimeError(
                    f"ledger sink exited with {self.sink.returncode}; "
                    f"see {self.logdir / 'ledger-sink.log'}"
                )
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    async def rows(self) -> list[AccountRow]:
        pipe = self.redis.pipeline(transaction=False)
        for a in self.accounts:
            pipe.hmget(self.keys.account_of(a), [F.CURRENCY, F.RATE_PLAN, F.BALANCE, F.SUSPENDED])
        out = []
        for a, (cur, plan, bal, susp) in zip(self.accounts, await pipe.execute(), strict=True):
            if cur is not None:
                out.append(AccountRow(a, cur.decode(), plan.decode(), int(bal), susp == b"1"))
        return out

    async def wait_caught_up(self, timeout: float = 120.0) -> bool:
        """Until the worker committed everything we produced and every outbox is empty."""
        s = self.settings
        return await wait_caught_up(
            s.kafka_bootstrap,
            s.group_id,
            self.produced,
            self.redis,
            self.keys,
            timeout,
            **self.security,
        )

    def stop_worker(self, timeout: float = 30.0) -> int | None:
        return None if self.worker is None else stop_process(self.worker, timeout)

    async def summary(self, tail: OutputTail, seconds: float, caught_up: bool) -> dict[str, Any]:
        t = tail.tally
        rows = await self.rows()
        mismatched = []
        for r in rows:
            key = self.keys.account_of(r.account)
            opening = int(await self.redis.hget(key, F.OPENING_BALANCE) or 0)
            if t.ledger_sum.get(r.account, 0) != r.balance_micros - opening:
                mismatched.append(r.account)
        events = sum(self.sent.values())
        stored = await self.database_entries(t.ledger_ids)
        database_agrees = stored is None or stored == len(t.ledger_ids)
        return {
            "seconds": round(seconds, 2),
            "events": events,
            "events_by_kind": dict(self.sent),
            "events_per_s": round(events / seconds, 1) if seconds else 0.0,
            "ledger_entries": len(t.ledger_ids),
            "ledger_by_kind": dict(t.kinds),
            "ledger_duplicates_seen": t.duplicates_seen,
            "dlq": sum(t.dlq.values()),
            "dlq_by_reason": dict(t.dlq),
            "accounts": len(rows),
            "suspended_accounts": len(t.suspended),
            "suspended_now": sum(r.suspended for r in rows),
            "restored_accounts": len(t.restored),
            "calls_cut_off": t.commands["call.cutoff"],
            "recharges_requested": len(t.requests),
            "recharges_succeeded": t.kinds["recharge"],
            "recharges_failed": t.notifications["recharge_failed"],
            "declined_account": self.payments.declined_account,
            "cutoff_lateness_ms_p99": percentile(t.cutoff_lateness_ms, 99),
            "cutoff_lateness_ms_max": max(t.cutoff_lateness_ms, default=None),
            "notifications": dict(t.notifications),
            "fees_by_item": dict(t.fee_items),
            "subscription_days_charged": t.subscription_days,
            "charge_results": dict(t.charge_results),
            "database_entries": stored,
            "database_agrees": database_agrees,
            "caught_up": caught_up,
            "reconciled": caught_up
            and not mismatched
            and len(rows) == len(self.accounts)
            and database_agrees,
            "unreconciled_accounts": mismatched,
        }

    async def close(self) -> None:
        await self.producer.stop()
        await close_redis(self.redis)


async def run_demo(
    opts: DemoOptions, bootstrap: str, redis_url: str, database_url: str = ""
) -> dict[str, Any]:
    demo = Demo(opts, bootstrap, redis_url, database_url)
    api = DemoApi(demo.settings, demo.logdir)
    live = sys.stdout.isatty() and not opts.summary_json
    try:
        await demo.prepare()
        demo.start_worker()
        demo.start_sink()
        tail = OutputTail(bootstrap, demo.marks, demo.security)
        await tail.start()
        # The switch starts once the worker has taken the accounts on: from then on every
        # call is held and cut in real time.
        if not await demo.wait_caught_up(timeout=120):
            raise RuntimeError(f"worker did not start; see {demo.logdir / 'worker.log'}")
        if demo.settings.database_dsn():
            api.start()
            if await api.ready():
                demo.billing_page = api.page(demo.accounts[0])
                print(f"billing page: {demo.billing_page}", flush=True)
            else:
                print(f"charger api did not start; see {api.log}", flush=True)
        print("worker ready, switch starting", flush=True)
        seconds = 0.0
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            seconds = await demo.play(tail, live)
        caught_up = await demo.wait_caught_up()
        await tail.settle()
        result = await demo.summary(tail, seconds, caught_up)
        result["worker_exit_code"] = demo.stop_worker()
        result["ledger_sink_exit_code"] = demo.stop_sink()
        result["api_exit_code"] = api.stop()
        result["billing_page"] = demo.billing_page
        await tail.stop()
        return result
    finally:
        demo.stop_worker()
        demo.stop_sink()
        api.stop()
        await demo.close()


def main(opts: DemoOptions) -> int:
    s = Settings()
    with (
        embedded_stack(s.kafka_bootstrap or None, s.redis_dsn() or None) as (bootstrap, url),
        embedded_postgres(s.database_dsn() or None) as database_url,
    ):
        try:
            result = asyncio.run(run_demo(opts, bootstrap, url, database_url))
        except KeyboardInterrupt:
            return 130
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if opts.summary_json:
        Path(opts.summary_json).write_text(text + "\n")
    print(text)
    return 0 if result["reconciled"] else 1
