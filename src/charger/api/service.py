"""`charger api` from settings: the clients, the plans, the statement store, the server.

Everything the API reads is wired here and nowhere else:

- balances: the worker's Redis through `charger.connections.redis_client` (one server,
  Sentinel, Cluster, TLS, ACL: the same settings as the worker), read-only;
- rate plans: the same as the worker's — the plan files (`CHARGER_RATE_PLANS_PATH`, or the
  sample plans) and, when `CHARGER_KAFKA_BOOTSTRAP` is set, the `billing.rate-plans`
  topic followed from its beginning (no consumer group: every instance reads it whole);
- statements: `statement_reader(settings)`, the one place the ledger store is chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.api.accounts import READS_IN_FLIGHT, AccountReader
from charger.api.app import ApiServices, create_api
from charger.api.auth import Tokens
from charger.connections import close_redis, kafka_security, redis_client, redis_location
from charger.faults import REDIS, dependency_of, summarize_error
from charger.heap import freeze_startup_objects
from charger.kafka.plans_reader import PlanBook, RatePlanReader
from charger.logs import logging_config
from charger.metrics import ApiMetrics
from charger.operator_errors import CommandError
from charger.protocol.keys import Keys
from charger.rating import load_plan_versions
from charger.runtime import default_plans_path
from charger.settings import Settings
from charger.statements.reader import StatementReader
from charger.store.client import ping

log = logging.getLogger("charger.api")

# Redis connections of one instance: AccountReader's reads in flight, and room for the
# readiness probe.
REDIS_CONNECTIONS = READS_IN_FLIGHT + 16
# How long start-up waits for the rate plan topic to be read to its end.
PLANS_CATCH_UP_S = 30.0


async def statement_reader(settings: Settings) -> StatementReader | None:
    """The ledger store statements are read from: the PostgreSQL `charger ledger-sink`
    writes (`CHARGER_DATABASE_URL`); None when none is configured (the statement routes
    then answer 503 "statements are not configured"). A database that cannot be reached,
    or whose schema is older than this build, stops the start with one line."""
    if not settings.database_dsn():
        return None
    from charger.postgres.statements import PostgresStatementReader

    return await PostgresStatementReader.connect(settings)


@dataclass
class Wiring:
    services: ApiServices
    plan_reader: RatePlanReader | None


@contextlib.asynccontextmanager
async def wired(settings: Settings) -> AsyncIterator[Wiring]:
    """The API's services from `settings`, started; closed on exit."""
    if not settings.redis_given():
        raise CommandError("charger api needs CHARGER_REDIS_URL (or CHARGER_REDIS_SENTINELS)")
    tokens = settings.api_token_list()
    if not tokens:
        raise CommandError("charger api needs CHARGER_API_TOKENS: /v1 is never open")
    timeout = settings.redis_timeout_ms / 1000
    redis = redis_client(
        settings,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=10,
        # Above AccountReader's concurrency, with room for the readiness probe.
        max_connections=REDIS_CONNECTIONS,
        # One quick reconnect for a connection a restart or failover dropped; a real
        # outage is a 503 at once, and the client asks again.
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), 1, (RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
    path = Path(settings.rate_plans_path) if settings.rate_plans_path else default_plans_path()
    book = PlanBook(load_plan_versions(path))
    plan_reader = None
    statements = None
    try:
        statements = await statement_reader(settings)
        if settings.kafka_bootstrap:
            plan_reader = RatePlanReader(
                settings.kafka_bootstrap, book, security=kafka_security(settings)
            )
            await plan_reader.start()
        reader = plan_reader

        async def redis_answers() -> None:
            await ping(redis)

        accounts = AccountReader(redis, Keys(settings.redis_prefix, settings.partitions))
        try:
            await accounts.connect()
        except Exception as exc:
            # Also the cluster client's own errors, which are no RedisError.
            if dependency_of(exc) != REDIS and not isinstance(exc, OSError):
                raise
            # /ready says so meanwhile; the connections open on demand once Redis answers.
            log.warning(
                "Redis not reachable at start-up: %s",
                summarize_error(exc),
                extra={"redis": redis_location(settings)},
            )
        services = ApiServices(
            accounts=accounts,
            plans=book.current,
            plans_ready=(lambda: reader is None or reader.caught_up.is_set()),
            tokens=Tokens(tokens),
            statements=statements,
            metrics=ApiMetrics(),
            max_call_s=settings.max_call_s,
            checks={"redis": redis_answers},
        )
        yield Wiring(services, plan_reader)
    finally:
        if plan_reader is not None:
            await plan_reader.stop()
        if statements is not None:
            await statements.close()
        await close_redis(redis)


def _server(config: uvicorn.Config) -> uvicorn.Server:
    class Server(uvicorn.Server):
        """uvicorn's server, ending with status 0 after a graceful stop on SIGTERM or SIGINT
        (uvicorn's own raises the signal again once it stopped, so the process dies of it)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, self.handle_exit, number, None)
            try:
                yield
            finally:
                for number in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(number)

    return Server(config)


async def serve(settings: Settings, host: str, port: int) -> None:
    """Run `charger api` until SIGTERM or SIGINT: requests in flight are finished first."""
    async with wired(settings) as wiring:
        if wiring.plan_reader is not None:
            try:
                await asyncio.wait_for(wiring.plan_reader.caught_up.wait(), PLANS_CATCH_UP_S)
            except TimeoutError:
                log.warning("rate plan topic not read to its end yet: /ready says so meanwhile")
        app = create_api(wiring.services)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # charger.logs' JSON lines
            access_log=False,  # charger_api_request_seconds counts every request
            server_header=False,
            lifespan="off",
            # Nothing here uses the client's address: no need to rewrite it from
            # X-Forwarded-For on every request.
            proxy_headers=False,
        )
        log.info(
            "charger api serving",
            extra={
                "host": host,
                "port": port,
                "redis": redis_location(settings),
                "statements": wiring.services.statements is not None,
                "plans": len(wiring.services.plans()),
            },
        )
        # Last before serving: the start-up objects out of the collector's full walks
        # (charger.heap says why).
        frozen = freeze_startup_objects()
        log.info(
            "start-up objects frozen",
            extra={
                "objects": frozen.frozen_objects,
                "garbage_collected": frozen.unreachable_collected,
            },
        )
        await _server(config).serve()


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings.log_level))
