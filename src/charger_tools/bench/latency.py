"""Produce-to-ledger latency of the real `charger worker` process at a fixed open-loop rate.

Events are produced on a schedule (rate per second, whatever the worker does) with their
send time as the record timestamp; the worker's ledger records carry the time the relay
published them. Entries are matched to events by `source_event_id`.

On the embedded stack the run gets a broker of its own, and the same schedule is played
once more to a bare consumer on another fresh broker (`broker_only_ms`): the embedded
broker's fetch latency grows with what it holds (bare produce-to-fetch p99 ~10 ms on an
empty broker, ~45 ms after 50,000 records, hundreds of ms after 100,000 on 8
partitions), so a broker filled by the throughput runs would measure itself, and the
baseline says which part of the figure is the broker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from charger.kafka.admin import create_topics
from charger.protocol.keys import Keys
from charger.settings import Settings
from charger.tasks import cancel_and_wait
from charger_tools.bench.proc import cpu_seconds, peak_rss_mb
from charger_tools.bench.report import latency_summary
from charger_tools.bench.runs import Env, prepare_charger, settings_env, spawn
from charger_tools.bench.workload import Workload, assign_at_end, produce_accounts, producer
from charger_tools.catchup import wait_caught_up
from charger_tools.embedded import free_port, start_broker
from charger_tools.processes import stop_process
from charger_tools.simulate.model import SimRecord
from charger_topics import names

# The switch's producer waits this long to fill a record batch: Kafka's own default since
# 4.0. The wait counts in the latency (records are stamped when sent); on the embedded
# broker, 1 ms gave batches of one or two records, and its fetches slow down with the
# number of batches it holds (bare produce-to-fetch p99 ~45 ms after 10 s at 1 ms).
SWITCH_LINGER_MS = 5


def _event_id(value: bytes) -> str | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    eid = doc.get("id") if isinstance(doc, dict) else None
    return eid if isinstance(eid, str) else None


class LedgerTail:
    """Reads the ledger from (about) its end and keeps publish times of the entries we want."""

    def __init__(self, bootstrap: str, wanted: dict[str, int]) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.wanted = wanted
        self.published: dict[str, int] = {}
        self.records = 0
        self.last_data = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        c = self.consumer
        await c.start()
        # From the contract, not the consumer's metadata: a consumer that subscribes to
        # nothing knows no topics on Apache Kafka (Tansu answers with all of them).
        parts = range(names.TOPICS[names.LEDGER].partitions)
        await assign_at_end(c, [TopicPartition(names.LEDGER, p) for p in parts])
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            data = await self.consumer.getmany(timeout_ms=100, max_records=5000)
            if data:
                self.last_data = time.monotonic()
            for msgs in data.values():
                for m in msgs:
                    self.records += 1
                    eid = orjson.loads(m.value).get("source_event_id")
                    if eid in self.wanted and eid not in self.published:
                        self.published[eid] = m.timestamp

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.consumer.stop()


async def _wait_ready(port: int, proc: Any, timeout: float = 90) -> float:
    began = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - began < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"charger worker exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(
                    f"http://127.0.0.1:{port}/owns", timeout=aiohttp.ClientTimeout(total=1)
                ) as resp:
                    if resp.status == 200:
                        return time.monotonic() - began
            await asyncio.sleep(0.2)
    raise TimeoutError("charger worker not ready")


async def play(
    prod: AIOKafkaProducer, records: list[SimRecord], rate: int, sent: dict[str, int]
) -> tuple[list[Any], float]:
    """Send `records` at `rate` per second on a fixed schedule, each stamped with its send
    time (noted in `sent` by event id); the acks and how long the schedule took."""
    ids = [_event_id(r.value) for r in records]
    futures = []
    began = time.monotonic()
    i = 0
    while i < len(records):
        due = min(len(records), int((time.monotonic() - began) * rate) + 1)
        for j in range(i, due):
            ts = time.time_ns() // 1_000_000
            eid = ids[j]
            if eid is not None and eid not in sent:
                sent[eid] = ts
            r = records[j]
            futures.append(await prod.send(r.topic, r.value, key=r.key, timestamp_ms=ts))
        i = due
        await asyncio.sleep(0.002)
    acked = await asyncio.gather(*futures)
    return acked, time.monotonic() - began


@contextlib.asynccontextmanager
async def own_broker(env: Env) -> AsyncIterator[Env]:
    """A fresh embedded broker with the topics, when the servers are ours and the broker is
    Tansu (whose fetches slow down with the batches it holds); else `env`."""
    if "broker" not in env.pids or not env.broker.startswith("Tansu"):
        yield env
        return
    broker = start_broker()
    try:
        await create_topics(broker.address, names.TOPICS.values())
        pids = {**env.pids, "broker": broker.pid}
        yield Env(broker.address, env.redis_url, env.workdir, pids, env.prefixes)
    finally:
        broker.stop()


async def broker_only(env: Env, w: Workload, rate: int, seconds: float) -> dict[str, Any]:
    """The same schedule to a bare consumer (fetch wait as the worker's): the broker's part."""
    records = w.extra[: int(rate * seconds)]
    sent: dict[str, int] = {}
    got: list[float] = []
    async with own_broker(env) as benv:
        tps = [
            TopicPartition(names.TELEPHONY_EVENTS, p)
            for p in range(names.TOPICS[names.TELEPHONY_EVENTS].partitions)
        ]
        c = AIOKafkaConsumer(
            bootstrap_servers=benv.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=Settings().fetch_wait_ms,
        )
        prod = producer(benv.bootstrap, linger_ms=SWITCH_LINGER_MS)
        await c.start()
        await prod.start()

        async def consume() -> None:
            while True:
                data = await c.getmany(timeout_ms=100)
                now = time.time_ns() // 1_000_000
                got.extend(now - m.timestamp for msgs in data.values() for m in msgs)

        await assign_at_end(c, tps)
        task = asyncio.create_task(consume())
        try:
            await play(prod, records, rate, sent)
            deadline = time.monotonic() + 30
            while len(got) < len(records) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            await cancel_and_wait(task)
            await prod.stop()
            await c.stop()
    return {"latency_ms": latency_summary(got), "records": len(records)}


async def run_latency(
    env: Env,
    w: Workload,
    rate: int,
    seconds: float,
    batch_max_records: int,
    batch_timeout_ms: int,
    *,
    extra: Mapping[str, Any] | None = None,
    baseline: bool = True,
) -> dict[str, Any]:
    """The latency run (`extra`: more worker settings); with `baseline`, the same schedule
    to a bare consumer too (`broker_only_ms`)."""
    own = "broker" in env.pids
    async with own_broker(env) as benv:
        if own:  # the accounts again, at this broker's offsets
            w = dataclasses.replace(w, account_offsets=[], starts={}, ends={})
            await produce_accounts(w, benv.bootstrap)
        s = (batch_max_records, batch_timeout_ms)
        result = await _run_latency(benv, w, rate, seconds, s, extra or {})
    result["own_broker"] = own
    if baseline:
        result["broker_only_ms"] = (await broker_only(env, w, rate, seconds))["latency_ms"]
    return result


async def _run_latency(
    env: Env,
    w: Workload,
    rate: int,
    seconds: float,
    batch: tuple[int, int],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    prefix, group = env.new("latency")
    s = env.settings(prefix, group, batch_max_records=batch[0], batch_timeout_ms=batch[1], **extra)
    await prepare_charger(env, w, s, events_at="")  # every input from its end
    records = w.extra[: int(rate * seconds)]
    sent: dict[str, int] = {}
    port = free_port()
    proc = spawn(
        ["-m", "charger", "worker", "--web-port", str(port), "-l", "warn"],
        settings_env(s),
        env.workdir / f"{group}.log",
    )
    tail = LedgerTail(env.bootstrap, sent)
    prod = producer(env.bootstrap, linger_ms=SWITCH_LINGER_MS)
    redis = Redis.from_url(env.redis_url)
    try:
        ready_s = await _wait_ready(port, proc)
        await tail.start()
        await prod.start()
        cpu0 = cpu_seconds(proc.pid)
        others0 = {"bench": time.process_time(), **env.cpu()}
        acked, produce_s = await play(prod, records, rate, sent)
        cpu1 = cpu_seconds(proc.pid)
        others = {
            k: round((v - others0[k]) / produce_s, 3)
            for k, v in {"bench": time.process_time(), **env.cpu()}.items()
        }
        ends: dict[TopicPartition, int] = {}
        for md in acked:
            tp = TopicPartition(md.topic, md.partition)
            ends[tp] = max(ends.get(tp, 0), md.offset + 1)
        caught_up = await wait_caught_up(
            env.bootstrap, s.group_id, ends, redis, Keys(prefix, s.partitions), 60
        )
        # Then read on until the ledger has been quiet for a moment.
        while time.monotonic() - tail.last_data < 1.0:
            await asyncio.sleep(0.1)
        rss = peak_rss_mb(proc.pid)
    finally:
        await tail.stop()
        await prod.stop()
        await redis.aclose()
        stop_process(proc)
        # The Faust app keeps its data directory under the group's name: ours to remove.
        shutil.rmtree(Path(tempfile.gettempdir()) / f"{group}-app-data", ignore_errors=True)
    lat = [float(tail.published[e] - sent[e]) for e in tail.published]
    worker_cpu = None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / produce_s, 3)
    return {
        "latency_ms": latency_summary(lat),
        "rate_per_s": rate,
        "events": len(records),
        "produce_seconds": round(produce_s, 2),
        "achieved_rate_per_s": round(len(records) / produce_s, 1),
        "ledger_entries_matched": len(lat),
        "caught_up": caught_up,
        "worker": "charger worker (Faust app + charging service), own process",
        "worker_ready_seconds": round(ready_s, 1),
        "worker_cpu_share": worker_cpu,
        "other_cpu_share": others,
        "worker_rss_mb": rss,
    }
