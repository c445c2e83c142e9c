"""`charger bench --only api`: `POST /v1/authorize` of a real `charger api` at a fixed rate.

On the embedded Valkey (or `CHARGER_REDIS_URL`), accounts are created by the worker's own
planner and `apply.lua`, a `charger api` process is started on a free loopback port, and
requests are sent open-loop: request i is due at start + i / rate whatever the answers
before it did, each on a pooled keep-alive connection. Latency is measured from the
instant a request was due (so a client or server that falls behind shows in it, no
coordinated omission) to the end of its answer; `service` from when it was sent. A second
of warm-up is not counted. The figures include the load generator's own CPU, on the
same machine: see docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from charger.protocol.keys import Keys
from charger_tools.bench.idle import wake_up_latency_bound
from charger_tools.bench.placement import pin_process, placement
from charger_tools.bench.proc import cpu_seconds
from charger_tools.bench.report import percentile
from charger_tools.bench.steal import StealWatch, split
from charger_tools.embedded import free_port
from charger_tools.processes import stop_process
from charger_tools.seeding import RecordWriter, redis_url_or_embedded

TOKEN = "bench-token-0123456789abcdef"
PREFIX = "benchapi"
PARTITIONS = 8
WARMUP_S = 1.0
NUMBERS = ("+14155550100", "+442071234567", "+33142685300")


def summary(values_ms: list[float]) -> dict[str, float | None]:
    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50": r(percentile(values_ms, 50)),
        "p90": r(percentile(values_ms, 90)),
        "p99": r(percentile(values_ms, 99)),
        "p999": r(percentile(values_ms, 99.9)),
        "max": r(max(values_ms, default=None)),
    }


async def seed(redis_url: str, accounts: int) -> None:
    """`accounts` accounts with $5 each, written as the worker writes them."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        writer = RecordWriter(redis, Keys(PREFIX, PARTITIONS))
        records: list[dict[str, Any]] = []
        now = "2026-01-01T00:00:00.000Z"
        for n in range(accounts):
            account = f"bench-{n}"
            for body in (
                {
                    "type": "account.upserted",
                    "currency": "USD",
                    "rate_plan": "std-usd",
                    "credit_limit_micros": 0,
                },
                {"type": "balance.credited", "amount_micros": 5_000_000, "reference": f"r{n}"},
            ):
                records.append(
                    {**body, "id": f"{body['type']}-{n}", "account": account, "time": now}
                )
        await writer.apply(records, int(time.time() * 1000))
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def charger_api(redis_url: str, workdir: Path) -> AsyncIterator[tuple[str, int]]:
    """A `charger api` process; yields its base URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "CHARGER_REDIS_URL": redis_url,
        "CHARGER_REDIS_PREFIX": PREFIX,
        "CHARGER_PARTITIONS": str(PARTITIONS),
        "CHARGER_API_TOKENS": TOKEN,
        "CHARGER_LOG_LEVEL": "WARNING",
    }
    for name in ("CHARGER_KAFKA_BOOTSTRAP", "CHARGER_DATABASE_URL"):
        env.pop(name, None)
    log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "charger", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/ready") as response:
                        if response.status == 200:
                            break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"charger api did not start: {(workdir / 'api.log').read_text()[-2000:]}"
                    )
                await asyncio.sleep(0.1)
        yield url, proc.pid
    finally:
        stop_process(proc, 10)
        log.close()


async def _connection(
    host: str, port: int, jobs: asyncio.Queue[tuple[int, float] | None], record: Any
) -> None:
    """One keep-alive connection: takes due requests from `jobs` until a None, writes each,
    reads its answer (status line, headers, Content-Length body)."""
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    try:
        while (job := await jobs.get()) is not None:
            n, due = job
            sent = clock()
            writer.write(record.request(n))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            record.done(due, sent, clock(), status)
    finally:
        writer.close()


class Record:
    """What the run sends and what it saw."""

    def __init__(self, host: str, accounts: int, counted_from: float) -> None:
        self.counted_from = counted_from
        self.latencies: list[float] = []
        self.dues: list[float] = []
        self.service: list[float] = []
        self.statuses: dict[int, int] = {}
        self.finished_at = counted_from
        self._requests = []
        for n in range(min(accounts, 1000) * len(NUMBERS)):
            body = orjson.dumps(
                {"account": f"bench-{n % accounts}", "kind": "call", "to": NUMBERS[n % 3]}
            )
            self._requests.append(
                b"POST /v1/authorize HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (host.encode(), TOKEN.encode(), len(body), body)
            )

    def request(self, n: int) -> bytes:
        return self._requests[n % len(self._requests)]

    def done(self, due: float, sent: float, finished: float, status: int) -> None:
        self.finished_at = max(self.finished_at, finished)
        if due >= self.counted_from:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append((finished - due) * 1000)
            self.dues.append(due)
            self.service.append((finished - sent) * 1000)


async def drive(
    url: str, rate: int, seconds: float, accounts: int, connections: int = 64
) -> dict[str, Any]:
    """Open-loop requests at `rate` per second for `seconds` (after the warm-up), over
    `connections` keep-alive connections: a due request waits for a free one (and that
    wait counts in its latency)."""
    host, _, port = url.removeprefix("http://").partition(":")
    start = time.perf_counter() + 0.3
    record = Record(host, accounts, start + WARMUP_S)
    jobs: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    workers = [
        asyncio.create_task(_connection(host, int(port), jobs, record)) for _ in range(connections)
    ]
    watch = StealWatch()
    watching = asyncio.create_task(watch.run())
    total = int(rate * (seconds + WARMUP_S))
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait((n, due))
    for _ in workers:
        jobs.put_nowait(None)
    results = await asyncio.gather(*workers, return_exceptions=True)
    watching.cancel()
    errors = sum(1 for result in results if isinstance(result, BaseException))
    measured = len(record.latencies)
    elapsed = max(record.finished_at - record.counted_from, 1e-9)
    return {
        "requests": measured,
        "target_rate": rate,
        "achieved_rate": round(measured / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(record.statuses.items())},
        "errors": errors,
        "latency_ms": summary(record.latencies),
        "service_ms": summary(record.service),
        "stolen_cpu": stolen_report(watch, record),
    }


def stolen_report(watch: StealWatch, record: Record) -> dict[str, Any]:
    """How much CPU the hypervisor took while requests were measured, and the latency of
    the requests due away from it (see charger_tools/bench/steal.py)."""
    share = watch.share(record.counted_from, record.finished_at)
    spans = watch.stolen_spans()
    near, away = split(record.dues, record.latencies, spans)
    return {
        "share": None if share is None else round(share, 3),
        "requests_due_near_it": len(near),
        "latency_ms_away_from_it": summary(away),
    }


def _run(coroutine: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """On uvloop when installed, as `charger api` runs: the load generator's own cost per
    request is then a fraction of the server's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    result: dict[str, Any] = uvloop.run(coroutine)
    return result


def main(
    rate: int, seconds: float, accounts: int, spread: bool = False, poll_idle: bool = False
) -> dict[str, Any]:
    """`spread`: leave every process where the kernel puts it, instead of on the one CPU
    of charger_tools/bench/placement.py. `poll_idle`: idle CPUs poll while measuring
    (charger_tools/bench/idle.py)."""
    load_before = os.getloadavg()
    own_cpus = os.sched_getaffinity(0)
    cpu = None if spread else placement(own_cpus)
    pinned: list[str] = []
    started_redis = not os.environ.get("CHARGER_REDIS_URL")
    with redis_url_or_embedded() as redis_url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(seed(redis_url, accounts))
        # Only a Valkey this benchmark started is moved, never a server it was given.
        valkey_pid = asyncio.run(redis_pid(redis_url)) if started_redis else None
        if cpu is not None and valkey_pid is not None and pin_process(valkey_pid, cpu):
            pinned.append("valkey")

        async def run() -> dict[str, Any]:
            async with charger_api(redis_url, Path(tmp)) as (url, pid):
                if cpu is not None:
                    if pin_process(pid, cpu):
                        pinned.append("api")
                    os.sched_setaffinity(0, cpu)
                    pinned.append("generator")
                cpu0, own0 = cpu_seconds(pid), time.process_time()
                report = await drive(url, rate, seconds, accounts)
                cpu1, own1 = cpu_seconds(pid), time.process_time()
                report["client_cpu_share"] = round((own1 - own0) / (seconds + WARMUP_S), 2)
                if cpu0 is not None and cpu1 is not None:
                    report["api_cpu_share"] = round((cpu1 - cpu0) / (seconds + WARMUP_S), 2)
                return report

        idle = "halt"
        try:
            with contextlib.ExitStack() as stack:
                if poll_idle:
                    held = stack.enter_context(wake_up_latency_bound(0))
                    idle = "poll" if held == "held" else f"halt ({held}: --api-poll-idle)"
                report = _run(run())
        finally:
            os.sched_setaffinity(0, own_cpus)
    report["idle_cpus"] = idle
    report["placement"] = "spread" if cpu is None else {"cpu": min(cpu), "pinned": pinned}
    report["seconds"] = seconds
    report["cpus"] = os.cpu_count()
    report["load_average_before"] = [round(x, 2) for x in load_before]
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


async def redis_pid(redis_url: str) -> int:
    """The process id the Redis at `redis_url` reports (the Valkey this benchmark started)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        info: dict[str, Any] = await redis.info("server")
    finally:
        await redis.aclose()
    return int(info["process_id"])
