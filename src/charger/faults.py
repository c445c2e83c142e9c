"""Which dependency an error came from, and how to name it in one log field.

Its own module because both the metrics (errors by dependency) and the loops that back off
(`charger.deps`) need it, and neither should import the other for it.
"""

from __future__ import annotations

import sys

from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

REDIS = "redis"
KAFKA = "kafka"
POSTGRES = "postgres"  # the ledger store of `charger ledger-sink`
OTHER = "other"  # a bug, bad data: none of the dependencies
DEPENDENCIES = (REDIS, KAFKA)  # the worker's


def dependency_of(error: BaseException) -> str:
    """The dependency an error came from: `redis`, `kafka`, `postgres` or `other`."""
    # Only the processes that use PostgreSQL load its driver, and no other process can hold
    # an error of it: the worker need not load psycopg to tell.
    postgres_driver = sys.modules.get("psycopg")
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # also when wrapped by another error
        seen.add(id(cause))
        # The cluster client's own errors (no node answers, slots not served) are no
        # RedisError.
        if isinstance(cause, RedisError | RedisClusterException):
            return REDIS
        if isinstance(cause, KafkaError):
            return KAFKA
        if postgres_driver is not None and isinstance(cause, postgres_driver.Error):
            return POSTGRES
        cause = cause.__cause__ or cause.__context__
    return OTHER


def summarize_error(error: BaseException) -> str:
    """`Type: message`, short enough for one log field."""
    text = str(error)
    name = type(error).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:300]
