"""The `charger chaos` command: a long stream under faults, then an independent check.

This module imports only what parsing the command line needs: the servers, the run and
their clients are imported once the progress lines have begun, so the first line comes
while the rest loads (seconds on a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

import orjson

from charger.cli import tool
from charger_tools.chaos.progress import Progress
from charger_tools.chaos.workload import CLUSTER_PARTITIONS, ChaosConfig

# The four invariants that must be zero for the run to pass, and those of the fees.
INVARIANTS = ("lost", "duplicated", "mismatched_accounts", "missed_cutoffs")
FEE_INVARIANTS = (
    "scheduled_missed",
    "scheduled_unexpected",
    "periods_charged_twice",
    "fee_results_wrong",
)
BROKERS = ("tansu", "kafka", "kafka-cluster")


def passed(report: dict[str, object]) -> bool:
    """The four invariants and the fees' are zero, the run settled, and no worker ever
    reported itself unhealthy (alive but with its batch loop dead or stalled)."""
    healthy = not report.get("unhealthy_checks")
    fees = report.get("fees")
    fees_right = isinstance(fees, dict) and all(fees.get(k) == 0 for k in FEE_INVARIANTS)
    invariants = all(report.get(k) == 0 for k in INVARIANTS)
    return bool(report.get("settled")) and healthy and invariants and fees_right


def main(cfg: ChaosConfig, json_path: str = "", broker_kind: str = "tansu") -> int:
    # A line at least every few seconds from the first moment to the report (run.py).
    with Progress() as progress, contextlib.ExitStack() as stack:
        progress.phase("loading")
        from charger_tools.apache_kafka import start_kafka
        from charger_tools.chaos.backends import start_backend
        from charger_tools.chaos.run import run_chaos
        from charger_tools.embedded import EmbeddedServer, start_broker, tansu_settings

        nodes: list[EmbeddedServer] = []
        progress.phase(f"starting the broker ({broker_kind})")
        if broker_kind == "tansu":
            broker = start_broker()
            stack.callback(broker.stop)
            stack.enter_context(tansu_settings())
            bootstrap = broker.address
        else:
            kafka = stack.enter_context(start_kafka(3 if broker_kind == "kafka-cluster" else 1))
            bootstrap, nodes = kafka.bootstrap, kafka.nodes
            progress.line(f"broker: Apache Kafka {kafka.version}, {len(nodes)} node(s)")
        progress.phase(f"starting Redis ({redis_kind(cfg)})")
        backend = start_backend(cfg)
        stack.callback(backend.stop)
        stack.callback(progress.phase, "stopping the servers")
        killable = nodes if len(nodes) >= 3 else []
        report = asyncio.run(run_chaos(cfg, bootstrap, backend, killable, progress))
        report["broker"] = broker_kind
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if json_path:
        Path(json_path).write_text(text + "\n")
    print(text)
    return 0 if passed(report) else 1


def redis_kind(cfg: ChaosConfig) -> str:
    if cfg.redis_cluster:
        return "a six-node cluster"
    if cfg.redis_failovers:
        return "a primary and a replica behind three Sentinels"
    return "one server, its append-only file fsynced on every write"


def parse(argv: Sequence[str]) -> tuple[ChaosConfig, str, str]:
    """The run's configuration, the report's path and the broker from the command line."""
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
    p.add_argument(
        "--broker",
        choices=BROKERS,
        default="tansu",
        help="the embedded broker: Tansu, one Apache Kafka node, or three (topics at "
        "replication factor 3, min.insync.replicas 2)",
    )
    p.add_argument(
        "--broker-kills",
        type=int,
        default=0,
        metavar="N",
        help="with --broker kafka-cluster: N times a broker is SIGKILLed and restarted",
    )
    p.add_argument("--json", default="", help="write the report here too")
    a = p.parse_args(argv)
    if a.broker_kills and a.broker != "kafka-cluster":
        p.error("--broker-kills needs --broker kafka-cluster")
    return (
        ChaosConfig(
            events=a.events,
            kills=a.kills,
            accounts=a.accounts,
            rate_per_s=a.rate,
            seed=a.seed,
            redis_rollbacks=a.redis_rollback,
            redis_failovers=a.redis_failover,
            redis_cluster=a.redis_cluster,
            broker_kills=a.broker_kills,
        ),
        a.json,
        a.broker,
    )


@tool("chaos", "a long stream under worker kills, Redis faults and a rebalance, checked")
def chaos_command(argv: Sequence[str]) -> int:
    return main(*parse(argv))
