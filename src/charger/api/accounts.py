"""Accounts as the API reads them: one account hash and its active calls, one round trip.

Read-only, and not the worker's code: the worker's Redis user is granted exactly what
`charger/store` sends (tests/unit/test_redis_acl.py); the API needs `HMGET`, `SCARD` and
`PING` on the accounts' keys. The two keys share the account's hash tag, so on a Redis
Cluster the pipeline goes to one primary. Fields are the worker's (`protocol/fields.py`);
an account exists once an `account.upserted` was applied (its hash has a currency).
"""

from __future__ import annotations

import asyncio
from typing import Final

from charger.charging.authorization import AccountView
from charger.protocol.fields import AccountField
from charger.protocol.keys import Keys, slot_of
from charger.store.client import RedisClient, ping

# The account hash fields the API shows, in this order.
VIEW_FIELDS: Final = [
    AccountField.CURRENCY,
    AccountField.RATE_PLAN,
    AccountField.BALANCE,
    AccountField.HELD,
    AccountField.CREDIT_LIMIT,
    AccountField.SUSPENDED,
    AccountField.TIME_ZONE,
    AccountField.AUTO_RECHARGE_ENABLED,
    AccountField.AUTO_RECHARGE_THRESHOLD,
    AccountField.AUTO_RECHARGE_AMOUNT,
    AccountField.RECHARGE_IN_FLIGHT,
    AccountField.LOW_BALANCE,
    AccountField.NOTIFY_EMAIL,
]


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _int(value: bytes | str | None) -> int:
    text = _text(value)
    return int(text) if text else 0


# What an authorization needs: fewer fields make the command cheaper to build and parse,
# a good part of the API's CPU per authorization.
AUTHORIZE_FIELDS: Final = [
    AccountField.CURRENCY,
    AccountField.RATE_PLAN,
    AccountField.BALANCE,
    AccountField.HELD,
    AccountField.CREDIT_LIMIT,
    AccountField.SUSPENDED,
]


# Sent as bytes: redis-py encodes a str argument on every command.
_AUTHORIZE_FIELD_BYTES: Final = [field.encode() for field in AUTHORIZE_FIELDS]


def view_of(
    account: str,
    values: list[bytes | str | None],
    active_calls: int,
    fields: list[AccountField] = VIEW_FIELDS,
) -> AccountView | None:
    """The account from the values of `fields` of its hash (those not read are empty);
    None when it was never upserted."""
    got: dict[AccountField, bytes | str | None] = dict.fromkeys(VIEW_FIELDS)
    got.update(zip(fields, values, strict=True))
    currency = _text(got[AccountField.CURRENCY])
    if not currency:
        return None
    return AccountView(
        account=account,
        currency=currency,
        rate_plan=_text(got[AccountField.RATE_PLAN]),
        balance_micros=_int(got[AccountField.BALANCE]),
        held_micros=_int(got[AccountField.HELD]),
        credit_limit_micros=_int(got[AccountField.CREDIT_LIMIT]),
        suspended=_text(got[AccountField.SUSPENDED]) == "1",
        active_calls=active_calls,
        time_zone=_text(got[AccountField.TIME_ZONE]) or "UTC",
        auto_recharge_enabled=_text(got[AccountField.AUTO_RECHARGE_ENABLED]) == "1",
        auto_recharge_threshold_micros=_int(got[AccountField.AUTO_RECHARGE_THRESHOLD]),
        auto_recharge_amount_micros=_int(got[AccountField.AUTO_RECHARGE_AMOUNT]),
        recharge_in_flight=bool(_text(got[AccountField.RECHARGE_IN_FLIGHT])),
        low_balance_micros=_int(got[AccountField.LOW_BALANCE]),
        notify_email=_text(got[AccountField.NOTIFY_EMAIL]),
    )


# Reads in flight at most, per API process: a burst beyond waits for a free connection.
READS_IN_FLIGHT: Final = 64


class AccountReader:
    """Reads accounts from the worker's Redis (any client of `charger.connections`).

    At most `concurrency` reads are in flight: a burst waits for a connection instead of
    opening more than the client's pool allows (redis-py refuses those at once)."""

    def __init__(self, redis: RedisClient, keys: Keys, concurrency: int = READS_IN_FLIGHT) -> None:
        self.redis = redis
        self.keys = keys
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)

    async def connect(self) -> None:
        """Open now as many connections as reads may be in flight (on a Cluster, to every
        primary); raises the client's error when Redis cannot be reached.

        redis-py opens a connection when a command finds none free, so a pool filled on
        demand grows exactly when requests queue: a hiccup of a few milliseconds raises the
        reads in flight, and each new connection's connect and greeting (`CLIENT SETINFO`)
        lengthens it. Measured with `charger bench --only api`, alternating: with the pool
        filled on demand the slowest request of a run took 3–75 ms, with it filled at
        start-up 3.6–5.3 ms (docs/performance.md)."""
        await asyncio.gather(*(ping(self.redis) for _ in range(self.concurrency)))

    async def account(self, account: str, full: bool = True) -> AccountView | None:
        """The account; `full=False` reads only what an authorization needs
        (`AUTHORIZE_FIELDS`: the rest stay at their empty values, `active_calls` at 0)."""
        slot = slot_of(account, self.keys.slots)
        key = self.keys.account(slot, account)
        async with self._slots:
            if not full:
                values = await self.redis.hmget(key, _AUTHORIZE_FIELD_BYTES)
                return view_of(account, values, 0, AUTHORIZE_FIELDS)
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(key, VIEW_FIELDS)
            pipe.scard(self.keys.account_calls(slot, account))
            values, calls = await pipe.execute()
        return view_of(account, values, int(calls))
