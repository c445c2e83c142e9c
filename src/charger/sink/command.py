"""`charger ledger-sink`: the process around the loop — settings, logs, web port, signals.

It migrates the schema, joins the sink's consumer group on billing.ledger and serves
/metrics, /health and /ready on `CHARGER_SINK_WEB_PORT` (or `--web-port`). SIGTERM or
SIGINT: the batch in hand is stored and committed, the consumer leaves its group, and the
process exits 0. An unreachable or refusing database or broker at start, or invalid
settings, is one line on stderr and exit status 1 (`charger.operator_errors`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import signal
from collections.abc import Sequence

from charger.connections import describe_connections
from charger.logs import logging_config
from charger.metrics import SinkMetrics
from charger.operator_errors import CommandError
from charger.postgres.connect import connect, database_location
from charger.postgres.migrate import migrate, migrations
from charger.settings import Settings
from charger.sink.loop import LedgerSink
from charger.sink.web import StatusPage, WebServer

__all__ = ["main", "run", "status_pages"]

log = logging.getLogger("charger.sink")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="charger ledger-sink",
        description="Store every ledger entry of billing.ledger in PostgreSQL "
        "(CHARGER_DATABASE_URL), once per entry id, for statements.",
    )
    p.add_argument(
        "--web-port", type=int, default=None, help="port of /metrics (CHARGER_SINK_WEB_PORT)"
    )
    p.add_argument(
        "--migrate-only",
        action="store_true",
        help="apply the schema's migrations and exit",
    )
    p.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not migrate; refuse to start on an older schema",
    )
    return p


def status_pages(sink: LedgerSink) -> dict[str, StatusPage]:
    """The sink's status pages beside /metrics: what its probes ask (deploy/k8s/statements)."""
    return {"/health": sink.health, "/ready": sink.ready}


async def run(settings: Settings, web_port: int, *, migrate_schema: bool = True) -> int:
    """Run the sink until SIGTERM or SIGINT; the exit status."""
    metrics = SinkMetrics()
    sink = LedgerSink(settings, metrics, migrate=migrate_schema)
    connections = describe_connections(settings)
    log.info(
        "ledger sink starting",
        extra={
            "group_id": settings.sink_group_id,
            "kafka": connections["kafka"],
            "database": database_location(settings),
        },
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sink.request_stop)
    web = WebServer(metrics.registry, status_pages(sink), "0.0.0.0", web_port)
    try:
        await sink.start()
        port = await web.start()
        log.info("ledger sink started", extra={"web_port": port})
        await sink.run()
        log.info("ledger sink stopping: the batch in hand was committed")
    finally:
        await web.stop()
        await sink.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("ledger sink stopped", extra={"batches": sink.batches, "stored": sink.stored})
    return 0


async def migrate_only(settings: Settings) -> int:
    conn = await connect(settings, "migrate", autocommit=True)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print(
        f"schema at version {len(migrations())} on {database_location(settings)}"
        + (f" (applied {', '.join(str(v) for v in applied)})" if applied else " (nothing to do)")
    )
    return 0


def main(argv: Sequence[str], settings: Settings) -> int:
    args = parser().parse_args(argv)
    if not settings.database_dsn():
        raise CommandError("CHARGER_DATABASE_URL is required (a postgresql:// URL)")
    logging.config.dictConfig(logging_config(settings.log_level))
    if args.migrate_only:
        return asyncio.run(migrate_only(settings))
    if not settings.kafka_bootstrap:
        raise CommandError("CHARGER_KAFKA_BOOTSTRAP is required")
    port = settings.sink_web_port if args.web_port is None else args.web_port
    return asyncio.run(run(settings, port, migrate_schema=not args.no_migrate))
