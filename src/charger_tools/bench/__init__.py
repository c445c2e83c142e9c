"""`charger bench`: throughput, latency and ticker benchmarks (`make bench`).

On the embedded broker and Redis (or the CHARGER_KAFKA_BOOTSTRAP / CHARGER_REDIS_URL
servers), one realistic switch mix is produced once; then the real charging path, a plain
Faust agent and a bare fetch-decode-debit loop each consume it on a fresh consumer group
and Redis key prefix. Latency is measured at a fixed open-loop rate against the real
`charger worker` process, and the ticker under 100,000 active calls. `--only planner`
alone measures the CPU of the charging core on the same mix, without servers; `--only api`
alone measures `POST /v1/authorize` of a real `charger api` at a fixed rate. See
docs/performance.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import orjson

from charger.cli import tool


@tool("bench", "throughput, latency and tick benchmarks (make bench)")
def bench_command(argv: Sequence[str]) -> int:
    from charger_tools.bench.report import missing
    from charger_tools.bench.suite import ALL, KNOWN, OPTIONAL, Options, main

    p = argparse.ArgumentParser(prog="charger bench", description=__doc__)
    p.add_argument("--events", type=int, default=200_000, help="events in the produced mix")
    p.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated subset of {ALL}, plus {OPTIONAL} on request; or planner or "
        "api alone",
    )
    p.add_argument("--json", default="", help="also write the report to this file")
    p.add_argument("--batch-max-records", type=int, default=Options.batch_max_records)
    p.add_argument("--batch-timeout-ms", type=int, default=Options.batch_timeout_ms)
    p.add_argument(
        "--scaled-workers", type=int, default=0, help="processes of charger_scaled (0: nproc)"
    )
    p.add_argument(
        "--faust-seconds",
        type=float,
        default=Options.faust_seconds,
        help="stop the Faust agent after this long",
    )
    p.add_argument("--faust-events", type=int, default=0, help="or after this many events")
    p.add_argument("--latency-rate", type=int, default=Options.latency_rate)
    p.add_argument("--latency-seconds", type=float, default=Options.latency_seconds)
    p.add_argument("--tick-calls", type=int, default=Options.tick_calls)
    p.add_argument("--tick-seconds", type=float, default=Options.tick_seconds)
    p.add_argument("--api-rate", type=int, default=1000, help="--only api: requests per second")
    p.add_argument("--api-seconds", type=float, default=10.0, help="--only api: how long")
    p.add_argument(
        "--api-spread",
        action="store_true",
        help="--only api: leave the processes where the kernel puts them (default: the load "
        "generator, the API and its Valkey share one CPU; docs/performance.md says why)",
    )
    p.add_argument(
        "--api-poll-idle",
        action="store_true",
        help="--only api: bound the CPUs' wake-up latency to 0 µs while measuring, as "
        "tuned's latency-performance profile does (needs root; docs/performance.md says why)",
    )
    p.add_argument("--api-accounts", type=int, default=1000, help="--only api: accounts asked")
    p.add_argument("--profile", default="", help="cProfile the charger run into this file")
    p.add_argument("--seed", type=int, default=Options.seed)
    p.add_argument(
        "--broker",
        choices=("tansu", "kafka"),
        default="tansu",
        help="the embedded broker when CHARGER_KAFKA_BOOTSTRAP is unset: Tansu, or one "
        "Apache Kafka node fetched with Maven (docs/brokers.md)",
    )
    a = p.parse_args(argv)
    if a.only == "planner":  # pure CPU, no servers: not part of the suite's report
        from charger_tools.bench.planner import main as planner_main

        return planner_main(
            ["--events", str(a.events), "--batch", str(a.batch_max_records), "--seed", str(a.seed)]
        )
    if a.only == "api":  # `charger api` alone: its own report
        from charger_tools.bench.api import main as api_main

        if a.api_rate < 1 or a.api_seconds <= 0 or a.api_accounts < 1:
            p.error("--api-rate, --api-seconds and --api-accounts must be positive")
        report = api_main(a.api_rate, a.api_seconds, a.api_accounts, a.api_spread, a.api_poll_idle)
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
        if a.json:
            Path(a.json).write_text(text + "\n")
        print(text)
        return 0 if report["requests"] and not report["errors"] else 1
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    unknown = sorted(set(only) - set(KNOWN))
    if unknown or not only:
        p.error(f"--only takes names from {', '.join(KNOWN)}; got {', '.join(unknown) or 'none'}")
    if a.events < 1000:
        p.error("--events must be at least 1000")
    if not 0 <= a.scaled_workers <= 8:
        p.error("--scaled-workers must be within 0..8 (one partition each at least)")
    opts = Options(
        events=a.events,
        only=only,
        batch_max_records=a.batch_max_records,
        batch_timeout_ms=a.batch_timeout_ms,
        scaled_workers=a.scaled_workers,
        faust_seconds=a.faust_seconds,
        faust_events=a.faust_events,
        latency_rate=a.latency_rate,
        latency_seconds=a.latency_seconds,
        tick_calls=a.tick_calls,
        tick_seconds=a.tick_seconds,
        profile=str(Path(a.profile).resolve()) if a.profile else "",
        seed=a.seed,
        broker=a.broker,
    )
    report = main(opts)
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    gaps = missing(report)
    if gaps:
        print(f"report is missing: {', '.join(gaps)}")
        return 1
    return 0
