"""`charger` command line: Faust's worker commands plus the project's own tools."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence

from charger.settings import Settings

# Commands that run without the Faust worker (each with its own argument parser).
TOOLS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {}


def tool(
    name: str, help_text: str
) -> Callable[[Callable[[Sequence[str]], int]], Callable[[Sequence[str]], int]]:
    def register(fn: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
        TOOLS[name] = (help_text, fn)
        return fn

    return register


@tool("topics", "create every contract topic: charger topics create [--bootstrap HOST:PORT]")
def _topics(argv: Sequence[str]) -> int:
    from charger.embedded import create_topics
    from topics.names import TOPICS

    p = argparse.ArgumentParser(prog="charger topics")
    p.add_argument("action", choices=["create"])
    p.add_argument("--bootstrap", default=Settings().kafka_bootstrap)
    p.add_argument("--partitions", type=int, default=None)
    args = p.parse_args(argv)
    if not args.bootstrap:
        p.error("--bootstrap or CHARGER_KAFKA_BOOTSTRAP is required")
    from charger.connections import kafka_security

    security = kafka_security(Settings())
    asyncio.run(create_topics(args.bootstrap, TOPICS.values(), args.partitions, security=security))
    print(f"created {len(TOPICS)} topics on {args.bootstrap}")
    return 0


# Tools living in their own modules, imported only when asked for so the worker starts lean.
LAZY_TOOLS = {
    "demo": ("charger.demo", "embedded stack + worker + simulated switch, with a live view"),
    "simulate": ("charger.simulate.cli", "play a realistic telephony switch into Kafka"),
    "bench": ("charger.bench", "throughput, latency and tick benchmarks (make bench)"),
    "chaos": ("charger.chaos", "worker kills, Redis restart, rebalance; then check (make chaos)"),
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in LAZY_TOOLS:
        importlib.import_module(LAZY_TOOLS[args[0]][0])
    if args and args[0] in TOOLS:
        sys.exit(TOOLS[args[0]][1](args[1:]))
    if not args or args[0] in ("-h", "--help"):
        print("usage: charger <command> [options]\n\ncommands:")
        print("  worker               run the charging worker (Faust; see charger worker --help)")
        for name, (help_text, _) in TOOLS.items():
            print(f"  {name:<20} {help_text}")
        for name, (_, help_text) in LAZY_TOOLS.items():
            print(f"  {name:<20} {help_text}")
        if not args:
            sys.exit(2)
        sys.exit(0)
    from charger.app import create_app

    app = create_app(Settings())
    sys.argv = ["charger", *args]
    app.main()
