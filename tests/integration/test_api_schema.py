"""Acceptance 4: schemathesis against `/openapi.json` finds no 5xx and no answer outside the
document — status codes, content types, headers and bodies — with the token and without it.

The API runs over real HTTP on a real Valkey holding accounts the worker's own code wrote,
with statements from a real PostgreSQL through the API's own reader. Checks:
everything but `positive_data_acceptance`: a schema cannot say that a statement range
must not run backwards or span more than a year, which the API answers with 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from charger.protocol.keys import Keys
from tests.kit import records as r
from tests.kit.api import (
    PARTITIONS,
    TOKEN,
    Accounts,
    api_in_thread,
    store_ledger,
    valkey_url,
)
from tests.kit.cluster import redis_for
from tests.kit.statements import ledger

PREFIX = "schema"
# Per operation; each is a request over loopback, a few milliseconds.
EXAMPLES = 150
NOW = datetime.now(UTC).replace(microsecond=0)


async def seed(redis_url: str) -> None:
    redis = redis_for(redis_url)
    try:
        accounts = Accounts(redis, Keys(PREFIX, PARTITIONS))
        t0 = NOW.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await accounts.apply(
            [
                r.account_upserted(t0, "a1", "u1"),
                r.balance_credited(t0, "a1", "t1", amount_micros=5_000_000),
                r.account_upserted(t0, "broke", "u2"),
                r.sms_sent(t0, "broke", "s1"),
            ]
        )
    finally:
        await redis.aclose()


@pytest.fixture
def api_url(database: str) -> Iterator[str]:
    with valkey_url() as url:
        asyncio.run(seed(url))
        moves = [
            (NOW - timedelta(days=days, hours=hours), "call", -1000)
            for days in range(3)
            for hours in range(2)
        ]
        moves.sort()
        asyncio.run(store_ledger(database, ledger("a1", 5_000_000, moves)))
        with api_in_thread(url, PREFIX, database) as base:
            yield base


def operations(base: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_api_keeps_to_its_document(api_url: str) -> None:
    # Driven by hand rather than by schemathesis' pytest plugin, which this pytest outgrew.
    found = operations(api_url)
    assert len(found) == 5
    for operation in found:

        @given(case=operation.as_strategy(), known=st.sampled_from([None, "a1", "broke"]))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def keeps_to_it(case: schemathesis.Case, known: str | None) -> None:
            # Random account ids are all unknown (404): most cases ask for a seeded one.
            if known is not None and case.path_parameters and "account" in case.path_parameters:
                case.path_parameters["account"] = known
            if known is not None and isinstance(case.body, dict) and "account" in case.body:
                case.body["account"] = known
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"},
                excluded_checks=[positive_data_acceptance],
            )

        keeps_to_it()
