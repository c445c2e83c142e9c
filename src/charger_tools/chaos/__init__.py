"""The `charger chaos` command: a long stream under faults, then an independent check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import orjson

from charger.cli import tool
from charger_tools.chaos.backends import CLUSTER_PARTITIONS, start_backend
from charger_tools.chaos.run import run_chaos
from charger_tools.chaos.workload import ChaosConfig
from charger_tools.embedded import start_broker

# The four invariants that must be zero for the run to pass.
INVARIANTS = ("lost", "duplicated", "mismatched_accounts", "missed_cutoffs")


def passed(report: dict[str, object]) -> bool:
    """The four invariants are zero, the run settled, and no worker ever reported itself
    unhealthy (alive but with its batch loop dead or stalled)."""
    healthy = not report.get("unhealthy_checks")
    return bool(report.get("settled")) and healthy and all(report.get(k) == 0 for k in INVARIANTS)


def main(cfg: ChaosConfig, json_path: str = "") -> int:
    with contextlib.ExitStack() as stack:
        broker = start_broker()
        stack.callback(broker.stop)
        backend = start_backend(cfg)
        stack.callback(backend.stop)
        report = asyncio.run(run_chaos(cfg, broker.address, backend))
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)
    return 0 if passed(report) else 1


def parse(argv: Sequence[str]) -> tuple[ChaosConfig, str]:
    """The run's configuration and the report's path from the command line."""
    p = argparse.ArgumentParser(
        prog="charger chaos",
        description="Start an embedded broker and a durable Valkey, play a stream of events "
        "while the worker is SIGKILLed and restarted, Redis restarts from its AOF and a second "
        "worker joins and leaves (and, with --redis-rollback, Redis forgets what it wrote in "
        "the last seconds); then check that nothing was lost or doubled. With "
        "--redis-failover, Redis is a primary and a replica behind three Sentinels and the "
        "primary is SIGKILLed instead of restarted; with --redis-cluster, a six-node cluster.",
    )
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--rate", type=float, default=300.0, help="input records per second")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--redis-rollback",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="N",
        help="N times, Redis goes back to its state of a few seconds before (what a failover "
        "to a replica that far behind does); the worker must apply again what it lost",
    )
    p.add_argument(
        "--redis-failover",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="N",
        help="N times, the Redis primary is SIGKILLed and its replica promoted (by three "
        "Sentinels, or by the cluster with --redis-cluster); the killed node then comes "
        "back as the new primary's replica",
    )
    p.add_argument(
        "--redis-cluster",
        action="store_true",
        help=f"Redis is a cluster of three primaries and three replicas, over "
        f"{CLUSTER_PARTITIONS} partitions",
    )
    p.add_argument("--json", default="", help="write the report here too")
    a = p.parse_args(argv)
    return ChaosConfig(
        events=a.events,
        kills=a.kills,
        accounts=a.accounts,
        rate_per_s=a.rate,
        seed=a.seed,
        redis_rollbacks=a.redis_rollback,
        redis_failovers=a.redis_failover,
        redis_cluster=a.redis_cluster,
    ), a.json


@tool("chaos", "a long stream under worker kills, Redis faults and a rebalance, checked")
def chaos_command(argv: Sequence[str]) -> int:
    return main(*parse(argv))
