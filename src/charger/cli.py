"""`charger` command line: Faust's worker commands, the product's own tools, and the tooling
commands of `charger_tools` when the `tools` extra is installed."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from pydantic import ValidationError

import charger
from charger.operator_errors import CommandError, explain
from charger.settings import Settings

# Commands that run without the Faust worker (each with its own argument parser).
TOOLS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {}

# Named here only to point at the extra when `charger_tools` cannot be imported; the
# commands themselves (modules and help) are listed by `charger_tools.COMMANDS`.
TOOLING_COMMANDS = ("demo", "simulate", "bench", "chaos")
INSTALL_TOOLS = "install charger[tools]: pip install 'charger[tools]'"

# Faust's worker options that do nothing in charger: its logging configuration (JSON lines on
# stdout at CHARGER_LOG_LEVEL, `charger.logs`) replaces Faust's, so -l/--loglevel and
# -f/--logfile change nothing, and the --debug console needs aiomonitor, which charger does not
# install. They stay accepted (scripts pass `-l`) but `charger worker --help` no longer offers
# them.
IGNORED_WORKER_OPTIONS = frozenset({"logfile", "loglevel", "console_port"})


def version() -> str:
    """charger's own version: the installed distribution's, else the source tree's."""
    try:
        return metadata.version("charger")
    except metadata.PackageNotFoundError:
        return charger.__version__


def tool(
    name: str, help_text: str
) -> Callable[[Callable[[Sequence[str]], int]], Callable[[Sequence[str]], int]]:
    def register(fn: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
        TOOLS[name] = (help_text, fn)
        return fn

    return register


@tool("topics", "create every contract topic (charger topics create --help)")
def _topics(argv: Sequence[str]) -> int:
    from charger.connections import kafka_security
    from charger.kafka.admin import create_topics
    from charger_topics.names import TOPICS

    p = argparse.ArgumentParser(prog="charger topics")
    p.add_argument("action", choices=["create"])
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--replication-factor", type=int, default=1)
    p.add_argument(
        "--min-insync-replicas",
        type=int,
        default=None,
        help="min.insync.replicas of every topic (default: the broker's)",
    )
    args = p.parse_args(argv)
    args.bootstrap = args.bootstrap or Settings().kafka_bootstrap
    if not args.bootstrap:
        p.error("--bootstrap or CHARGER_KAFKA_BOOTSTRAP is required")
    if args.replication_factor < 1:
        p.error("--replication-factor must be at least 1")
    if args.min_insync_replicas is not None and not (
        1 <= args.min_insync_replicas <= args.replication_factor
    ):
        p.error("--min-insync-replicas must be between 1 and the replication factor")

    security = kafka_security(Settings())
    # aiokafka logs each failed connection attempt; the failure is told in one line below.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(
            create_topics(
                args.bootstrap,
                TOPICS.values(),
                args.partitions,
                replication_factor=args.replication_factor,
                min_insync_replicas=args.min_insync_replicas,
                security=security,
            )
        )
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise
        raise CommandError(f"{line} (bootstrap {args.bootstrap})") from exc
    print(f"created {len(TOPICS)} topics on {args.bootstrap}")
    return 0


@tool("api", "serve balances, authorization, statements and the billing page over HTTP")
def _api(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="charger api",
        description="The HTTP API (/v1, /openapi.json, /metrics, /ready) and the billing page "
        "(/billing/); see the README's API section.",
    )
    p.add_argument("--host", default=None, help="address to listen on (CHARGER_API_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (CHARGER_API_PORT)")
    args = p.parse_args(argv)
    settings = load_settings("api")
    from charger.api.service import configure_logging, serve

    configure_logging(settings)
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    # uvloop, which `charger api` depends on: its transports cost a fraction of asyncio's
    # per request (docs/performance.md).
    import uvloop

    uvloop.run(serve(settings, host, port))
    return 0


@tool("ledger-sink", "store billing.ledger in PostgreSQL (charger ledger-sink --help)")
def _ledger_sink(argv: Sequence[str]) -> int:
    from charger.sink.command import main as sink_main

    return sink_main(argv, load_settings("ledger-sink"))


def tooling_commands() -> tuple[dict[str, tuple[str, str]], str]:
    """The tooling commands (name: module, help), or none and why not.

    Looked up only for commands other than the worker's and the product's own, so the
    worker never loads the tooling.
    """
    try:
        tooling = importlib.import_module("charger_tools")
    except ImportError as exc:
        return {}, str(exc)
    commands: dict[str, tuple[str, str]] = tooling.COMMANDS
    return commands, ""


def guarded(command: str, call: Callable[[], int]) -> int:
    """`call()`, with the errors an operator meets (settings, unreachable or refusing servers)
    told in one line on stderr and exit status 1 instead of a traceback; bugs still raise."""
    try:
        return call()
    except CommandError as exc:
        line: str | None = str(exc)
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise
    print(f"charger {command}: {line}", file=sys.stderr)
    return 1


def load_settings(command: str) -> Settings:
    """The `CHARGER_*` settings, or one line naming every problem and exit status 1."""
    try:
        return Settings()
    except ValidationError as exc:
        print(f"charger {command}: {explain(exc)}", file=sys.stderr)
        sys.exit(1)


def hide_ignored_worker_options() -> None:
    """Take the options of `IGNORED_WORKER_OPTIONS` out of `charger worker --help`."""
    from faust.cli.faust import cli  # registers the worker command on Faust's group

    worker = cli.commands["worker"]
    for param in worker.params:
        if param.name in IGNORED_WORKER_OPTIONS and hasattr(param, "hidden"):
            param.hidden = True


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command in ("--version", "-V"):
        print(f"charger {version()}")
        sys.exit(0)
    tooling: dict[str, tuple[str, str]] = {}
    helping = command in ("", "-h", "--help")
    # Faust's own commands and options (`worker`, `-l info worker`) never load the tooling.
    if helping or not (command in TOOLS or command == "worker" or command.startswith("-")):
        tooling, unavailable = tooling_commands()
        if command in tooling:
            importlib.import_module(tooling[command][0])
        elif command in TOOLING_COMMANDS:
            print(f"charger {command} is a tooling command; {INSTALL_TOOLS}", file=sys.stderr)
            print(f"({unavailable})", file=sys.stderr)
            sys.exit(2)
    if command in TOOLS:
        sys.exit(guarded(command, lambda: TOOLS[command][1](args[1:])))
    if helping:
        print("usage: charger <command> [options]\n\ncommands:")
        print("  worker               run the charging worker (Faust; see charger worker --help)")
        for name, (help_text, _) in TOOLS.items():
            print(f"  {name:<20} {help_text}")
        for name, (_, help_text) in tooling.items():
            if name not in TOOLS:  # listed above if its module was imported already
                print(f"  {name:<20} {help_text}")
        if not tooling:
            print(f"  {', '.join(TOOLING_COMMANDS)}\n  {'':<20} tooling; {INSTALL_TOOLS}")
        if not args:
            sys.exit(2)
        sys.exit(0)
    from charger.app import create_app

    settings = load_settings(command or "worker")
    app = create_app(settings)
    hide_ignored_worker_options()
    sys.argv = ["charger", *args]
    app.main()
