"""apply.lua contract, run against every Redis backend at hand.

Always the session's Redis (embedded Valkey unless CHARGER_REDIS_URL is set), the
session's Redis Cluster (six embedded Valkey nodes: a test's keys all carry one hash tag,
so they live on one primary), and Redis 7 (Debian's `redis-server`, started here when
installed: `.ci/run` installs it, and on CI a missing one fails), alone and as a cluster;
add more with CHARGER_TEST_REDIS_URLS (comma-separated; ``redis+cluster://`` for a
cluster).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from charger.charging.documents import render
from charger.charging.refusals import pack_headers, unpack_headers
from charger.protocol.fields import AccountField
from charger.protocol.keys import Keys
from charger.protocol.ops import Move, Refuse, ScriptConfig, SlotPlan, UpsertAccount
from charger.protocol.outputs import Refused, decode_entry
from charger.store.redis_store import RedisStore
from charger_tools.cluster import Cluster, start_cluster
from charger_tools.embedded import start_redis
from tests.kit.cluster import redis_for
from tests.kit.harness import Stack
from tests.kit.servers import redis_server_binary

EXTRA = [u for u in os.environ.get("CHARGER_TEST_REDIS_URLS", "").split(",") if u]
SRC = "telephony.events/0"


@pytest.fixture(scope="module")
def redis7() -> Iterator[str]:
    """A Redis server (not Valkey) of this module's own."""
    server = start_redis(binary=redis_server_binary())
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis7_cluster() -> Iterator[Cluster]:
    """A Redis Cluster of six Redis servers (not Valkey) of this module's own."""
    cluster = start_cluster(binary=redis_server_binary())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["session", "cluster", "redis7", "redis7_cluster", *EXTRA])
async def store(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[RedisStore]:
    if request.param == "session":
        url = stack.redis_url
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    elif request.param == "redis7":
        url = request.getfixturevalue("redis7")
    elif request.param == "redis7_cluster":
        url = request.getfixturevalue("redis7_cluster").url
    else:
        url = request.param
    client = redis_for(url)
    keys = Keys(f"lua{uuid.uuid4().hex[:8]}", 8)
    yield RedisStore(client, keys, ScriptConfig(600, 600, 10, 2000, 3_600_000, 600_000, 3_600_000))
    async for key in client.scan_iter(match=f"{keys.prefix}:*"):
        await client.delete(key)
    await client.aclose()


def usage(sp: SlotPlan, k: Keys, offset: int, eid: str, amount: int, acct: str = "a") -> None:
    head = b'{"id":"' + eid.encode() + b'"'
    seen = k.seen(0, "ev", eid)
    move = Move(k.account(0, acct), seen, f"fp-{eid}", amount, head, "sms", acct, f"ev:{eid}:", "T")
    sp.slot(0).add(SRC, offset, move)


def upsert(
    sp: SlotPlan, k: Keys, offset: int, credit_limit_micros: int = 0, acct: str = "a"
) -> None:
    seen = k.seen(0, "ac", f"u{offset}")
    upsert = UpsertAccount(
        k.account(0, acct),
        seen,
        f"fpu{offset}",
        acct,
        "USD",
        "std-usd",
        credit_limit_micros,
        0,
        0,
        0,
        "",
        f"ac:u{offset}:",
        "T",
    )
    sp.slot(0).add("billing.accounts/0", offset, upsert)


async def outputs(store: RedisStore) -> list[str]:
    entries = (await store.outbox([0], 1000)).get(0, [])
    return [d.kind for _, e in entries for o in decode_entry(e) for d in render(o)]


async def test_moves_money_once_per_offset_and_per_id(store: RedisStore) -> None:
    k = store.keys
    sp = SlotPlan()
    upsert(sp, k, 0)
    usage(sp, k, 5, "credit", 1_000_000)
    usage(sp, k, 6, "e1", -300_000)
    highest = {SRC: 6, "billing.accounts/0": 0}
    assert await store.apply(sp, highest, 1) == (3, 0)
    # The same batch again (redelivery): below the watermark, nothing moves.
    assert await store.apply(sp, highest, 2) == (0, 3)
    # The same id at a later offset (producer resend): the seen set stops it.
    again = SlotPlan()
    usage(again, k, 9, "e1", -300_000)
    assert await store.apply(again, {SRC: 9}, 3) == (0, 1)
    assert int(await store.client.hget(k.account(0, "a"), AccountField.BALANCE)) == 700_000
    assert await outputs(store) == ["ledger", "ledger"]


async def test_suspends_once_at_the_floor_and_restores_once(store: RedisStore) -> None:
    k = store.keys
    sp = SlotPlan()
    upsert(sp, k, 0, credit_limit_micros=100)
    usage(sp, k, 1, "c", 200)
    for i in range(2, 7):  # 200 -> 100 -> 0 -> -100 (floor) -> -200 -> -300
        usage(sp, k, i, f"d{i}", -100)
    usage(sp, k, 7, "top", 1_000)
    await store.apply(sp, {SRC: 7, "billing.accounts/0": 0}, 1)
    kinds = await outputs(store)
    assert kinds.count("suspended") == 1 and kinds.count("restored") == 1
    # suspension comes right after the movement that reached -100, not before
    assert kinds.index("suspended") == 1 + 3  # after ledger of c, d2, d3, d4
    assert kinds[kinds.index("suspended") + 1] == "notification"  # balance_exhausted
    assert int(await store.client.hget(k.account(0, "a"), AccountField.BALANCE)) == 700
    assert await store.client.hget(k.account(0, "a"), AccountField.SUSPENDED) == b"0"


async def test_ledger_balance_after_is_exact_for_large_balances(store: RedisStore) -> None:
    k = store.keys
    sp = SlotPlan()
    upsert(sp, k, 0)
    usage(sp, k, 1, "big", 999_999_999_999_999)  # just under 10**15 micros
    usage(sp, k, 2, "one", -1)
    await store.apply(sp, {SRC: 2, "billing.accounts/0": 0}, 1)
    entries = (await store.outbox([0], 10))[0]
    values = [
        d.value
        for _, e in entries
        for o in decode_entry(e)
        for d in render(o)
        if d.kind == "ledger"
    ]
    assert values[-1].endswith(b'"balance_after_micros":999999999999998}')


async def test_relay_ack_removes_only_acknowledged_entries(store: RedisStore) -> None:
    k = store.keys
    sp = SlotPlan()
    upsert(sp, k, 0)
    usage(sp, k, 1, "x", 10)
    usage(sp, k, 2, "y", 10)
    await store.apply(sp, {SRC: 2, "billing.accounts/0": 0}, 1)
    later = SlotPlan()
    usage(later, k, 3, "z", 10)
    await store.apply(later, {SRC: 3}, 2)
    entries = (await store.outbox([0], 10))[0]
    # one entry per apply call, holding its outputs in order
    assert [len(decode_entry(e)) for _, e in entries] == [2, 1]
    await store.ack_outbox({0: [entries[0][0]]})
    left = (await store.outbox([0], 10))[0]
    assert [eid for eid, _ in left] == [entries[1][0]]


async def test_every_output_carries_the_trace_context_of_the_op_that_made_it(
    store: RedisStore,
) -> None:
    k = store.keys
    sp = SlotPlan()
    upsert(sp, k, 0, credit_limit_micros=0)
    traced = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01rojo=1"
    head = b'{"id":"ev:e1:sms"'
    move = Move(
        k.account(0, "a"), k.seen(0, "ev", "e1"), "fp", -10, head, "sms", "a", "ev:e1:", "T"
    )
    sp.slot(0).add(SRC, 1, move, traced)  # takes the account below its floor: suspended
    refused = Refuse(
        False,
        False,
        "empty_record",
        "no value",
        "telephony.events",
        0,
        2,
        "",
        1_700_000_000_000,
        1,
        pack_headers([("x-null", None), ("k", b"v")]),
        3,
    )
    sp.slot(0).add(SRC, 2, refused, b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")
    sp.slot(0).add_tick(10)
    await store.apply(sp, {SRC: 2, "billing.accounts/0": 0}, 1)
    entries = (await store.outbox([0], 10))[0]
    outputs = [o for _, e in entries for o in decode_entry(e)]
    assert [(type(o).__name__, o.trace) for o in outputs] == [
        ("LedgerEntry", traced),
        ("FloorCrossed", traced),
        ("Refused", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),
    ]
    dead = outputs[-1]
    assert isinstance(dead, Refused)
    assert (dead.key, dead.value) == (None, None)  # a null key and value stay null
    assert (dead.timestamp_ms, dead.timestamp_type, dead.headers_dropped) == (
        1_700_000_000_000,
        1,
        3,
    )
    assert unpack_headers(dead.headers) == [("x-null", None), ("k", b"v")]
