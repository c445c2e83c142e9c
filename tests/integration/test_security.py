"""The worker on a locked-down Redis: the deploy ACL file, AUTH, TLS, and no secret in sight.

A Valkey of its own loads deploy/redis/users.acl — the file itself, with only the worker's
key pattern changed from ``~ch:*`` to this run's prefix (the pattern follows
CHARGER_REDIS_PREFIX). The real `charger worker` process then charges as the restricted
user `charger`: accounts, credits, SMS, a call, an auto-recharge and its result, a bad
record, ticks and the metrics sampler. Valkey's own books must show that nothing was
refused (`ACL LOG` empty, no rejected call), and the same user must get NOPERM for
everything outside its grant. A real `charger api` process reads balances and authorizes
as its read-only user `charger-api` on the same file, and every write of that user is
refused.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.exceptions
from redis.asyncio import Redis

from charger_tools.embedded import HOST
from charger_topics import names
from tests.kit import records as r
from tests.kit.acl import API_USER, WORKER_USER, render, users
from tests.kit.api import PARTITIONS, TOKEN, Accounts, api_process, bearer
from tests.kit.harness import Run
from tests.kit.outputs import entries, recharge_requests
from tests.kit.records import (
    account_upserted,
    balance_credited,
    call_ended,
    call_started,
    recharge_result,
    routed,
    sms_sent,
)
from tests.kit.servers import (
    OPS_PASSWORD,
    Locked,
    api_password,
    valkey_with_acl,
    worker_password,
)
from tests.kit.waits import until
from tests.kit.worker import Worker

EV, RR = names.TELEPHONY_EVENTS, names.RECHARGE_RESULTS
SMS = 7_900  # std-usd, outbound, per segment
CALL_60S = 600_000  # std-usd to "1": 0.60/min, 1/1 increments
THRESHOLD, AMOUNT = 10_000_000, 60_000_000


async def command_stats(ops: Redis) -> dict[str, dict[str, Any]]:
    info: dict[str, Any] = await ops.info("commandstats")
    return {k.removeprefix("cmdstat_"): v for k, v in info.items()}


async def test_the_worker_charges_end_to_end_as_the_restricted_user(locked: Locked) -> None:
    run, ops = locked.run, locked.ops
    a = run.acct("acl")
    u = run.uid
    worker = Worker(run, CHARGER_REDIS_USERNAME=WORKER_USER, CHARGER_REDIS_PASSWORD=locked.password)
    try:
        auto = {"enabled": True, "threshold_micros": THRESHOLD, "amount_micros": AMOUNT}
        upserted = account_upserted(
            run, a, f"up-{u}", notify_email="ops@example.com", auto_recharge=auto
        )
        opened = balance_credited(run, a, f"cr-{u}", amount_micros=10_500_000, reference="opening")
        texts = [sms_sent(run, a, f"s{i}-{u}", message_id=f"m{i}") for i in range(3)]
        call = f"c-{u}"
        await run.send_all(
            [
                routed(upserted),
                routed(opened),
                *map(routed, texts),
                routed(call_started(run, a, f"cs-{u}", call_id=call)),
                routed(call_ended(run, a, f"ce-{u}", call_id=call, duration_ms=60_000)),
                (EV, a, b"{not json"),
            ]
        )
        await run.wait_idle(90)
        # 10.50 - 3 SMS - a minute falls below the 10.00 threshold: one recharge request.
        (request,) = await recharge_requests(run)
        succeeded = recharge_result(
            run, a, f"rr-{u}", request_id=request["request_id"], amount_micros=AMOUNT
        )
        await run.send(RR, a, succeeded)
        await run.wait_idle(60)

        # The sampler's own commands (ZCARD, ZRANGE) ran too: it samples every 5 s.
        async def sampled() -> bool:
            return (await command_stats(ops)).get("zcard", {}).get("calls", 0) > 0

        await until(sampled, "the metrics sampler never read Redis", 30, interval=0.2)
    finally:
        code = worker.stop()
    output = worker.output
    assert code == 0, output[-3000:]

    ledger = {e["kind"]: e for e in await entries(run, a)}
    assert {"topup", "sms_out", "call", "recharge"} <= set(ledger)
    assert ledger["call"]["amount_micros"] == -CALL_60S
    closing = 10_500_000 - 3 * SMS - CALL_60S + AMOUNT
    assert await run.balance(a) == closing
    assert len([o for o in await run.outputs(names.DLQ)]) >= 1

    # Valkey's books: nothing the worker sent was refused.
    assert await ops.acl_log(count=200) == []
    stats = await command_stats(ops)
    refused = {c: s for c, s in stats.items() if int(s.get("rejected_calls", 0))}
    assert not refused, refused
    assert int(stats["evalsha"]["calls"]) > 0
    assert "NOPERM" not in output and "no permissions" not in output
    assert locked.password not in output


FORBIDDEN: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("CLIENT", "LIST"),
    ("INFO",),
    ("SHUTDOWN", "NOSAVE"),
    ("SCRIPT", "FLUSH"),
    ("EVAL", "return 1", "0"),
    ("ACL", "LIST"),
    ("DEL", "k"),
    ("MONITOR",),
]


async def test_the_restricted_user_is_refused_everything_else(locked: Locked) -> None:
    run, ops = locked.run, locked.ops
    prefix = run.settings.redis_prefix
    own = f"{prefix}:{{t0}}:probe"  # a key of the run's own prefix
    c = locked.client()
    try:
        await ops.acl_log_reset()
        assert await c.ping()
        assert await c.hset(own, "f", "mine") == 1  # its own keys: allowed
        for cmd in FORBIDDEN:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await c.execute_command(*cmd)
        # Keys outside the prefix: another deployment's (`ch:`) and anything else.
        for key in ("ch:{t0}:a:acct-1", "other", f"{prefix}x:{{t0}}:wm"):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await c.hget(key, "f")
        # Inside a script the ACL applies to every command it runs and every key it touches.
        sha = await c.script_load("return redis.call('HGET', KEYS[1], 'f')")
        assert await c.evalsha(sha, 1, own) == b"mine"
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions"):
            await c.evalsha(sha, 1, "ch:{t0}:wm")
        flush = await c.script_load("return redis.call('FLUSHALL')")
        with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions"):
            await c.evalsha(flush, 0)
    finally:
        await c.aclose()
    log = await ops.acl_log(count=200)
    assert {e["username"] for e in log} == {WORKER_USER}
    assert {e["reason"] for e in log} == {"command", "key"}
    objects = {e["object"] for e in log}
    assert {"flushall", "keys", "config|get", "eval", "ch:{t0}:a:acct-1", "other"} <= objects


async def test_no_anonymous_access_and_a_wrong_password_says_nothing(locked: Locked) -> None:
    anonymous = Redis(host=HOST, port=locked.port)
    wrong = locked.client(password="not-the-" + locked.password)
    try:
        with pytest.raises(redis.exceptions.RedisError) as err:
            await anonymous.ping()
        assert "auth" in str(err.value).lower()
        with pytest.raises(redis.exceptions.AuthenticationError) as err:
            await wrong.ping()
        assert locked.password not in f"{err.value!s} {err.value!r}"
    finally:
        await anonymous.aclose()
        await wrong.aclose()
    # The worker process itself, started with a wrong password: fails, and says why without
    # saying the password.
    bad = "not-the-" + locked.password
    worker = Worker(locked.run, CHARGER_REDIS_USERNAME=WORKER_USER, CHARGER_REDIS_PASSWORD=bad)
    code = await worker.run_to_exit(90)
    output = worker.output
    assert code != 0
    assert "AuthenticationError" in output or "invalid username-password" in output, output[-3000:]
    assert bad not in output and locked.password not in output


async def test_a_worker_refused_by_kafka_says_nothing_secret(run: Run) -> None:
    """SASL against a broker that grants none: the worker stops without showing the password."""
    secret = f"sasl-secret-{run.uid}"
    env = {
        "CHARGER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CHARGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CHARGER_KAFKA_SASL_USERNAME": "charger",
        "CHARGER_KAFKA_SASL_PASSWORD": secret,
    }
    worker = Worker(run, **env)
    code = await worker.run_to_exit(90)
    output = worker.output
    assert code != 0
    assert "sasl" in output.lower(), output[-3000:]  # it says why
    assert secret not in output


API_T0 = "2026-11-22T10:00:00.000Z"


async def test_charger_api_reads_as_its_read_only_user_and_cannot_write(tmp_path: Path) -> None:
    """`charger api` logged in as `charger-api` on a Valkey loading the deploy ACL file (for
    this test's prefix): balances, authorization and /ready work with nothing refused;
    then the same user is refused every write, inside a script too."""
    from charger.protocol.keys import Keys, slot_of
    from charger.store.client import ping

    prefix = f"acl{uuid.uuid4().hex[:8]}"
    password = api_password()
    assert users()[API_USER].accepts(password)
    with valkey_with_acl(render(prefix)) as port:
        ops = Redis(host=HOST, port=port, username="ops", password=OPS_PASSWORD)
        # Accounts written as the worker writes them (its own user, apply.lua).
        worker = Redis(host=HOST, port=port, username=WORKER_USER, password=worker_password())
        api_user = Redis(host=HOST, port=port, username=API_USER, password=password)
        try:
            accounts = Accounts(worker, Keys(prefix, PARTITIONS))
            await accounts.apply(
                [
                    r.account_upserted(API_T0, "a1", "u1"),
                    r.balance_credited(API_T0, "a1", "t1", amount_micros=1_000_000),
                ]
            )
            await ops.acl_log_reset()
            url = f"redis://{HOST}:{port}/0"
            async with (
                api_process(
                    url,
                    prefix,
                    tmp_path,
                    CHARGER_REDIS_USERNAME=API_USER,
                    CHARGER_REDIS_PASSWORD=password,
                ) as api,
                httpx.AsyncClient() as client,
            ):
                account = await client.get(f"{api.url}/v1/accounts/a1", headers=bearer(TOKEN))
                assert account.status_code == 200, account.text
                assert account.json()["balance_micros"] == 1_000_000
                assert account.json()["active_calls"] == 0  # SCARD ran
                call = await client.post(
                    f"{api.url}/v1/authorize",
                    json={"account": "a1", "kind": "call", "to": r.US_NUMBER},
                    headers=bearer(),
                )
                assert call.status_code == 200 and call.json()["allowed"] is True, call.text
                assert (await client.get(f"{api.url}/ready")).status_code == 200
            assert api.proc.returncode == 0
            log = api.log.read_text()
            assert "NOPERM" not in log and "no permissions" not in log, log[-3000:]
            assert password not in log
            assert await ops.acl_log(count=200) == []
            stats = await command_stats(ops)
            assert int(stats["hmget"]["calls"]) >= 2 and int(stats["scard"]["calls"]) >= 1

            # The API's user writes nothing: not its own keys, not through a script.
            own = Keys(prefix, PARTITIONS).account(slot_of("a1", PARTITIONS), "a1")
            await ping(api_user)
            assert await api_user.hmget(own, ["currency"]) == [b"USD"]
            writes: list[tuple[str, ...]] = [
                ("HSET", own, "balance", "999999999"),
                ("HINCRBY", own, "balance", "1"),
                ("DEL", own),
                ("SET", f"{prefix}:{{t0}}:x", "1"),
                ("SCRIPT", "LOAD", "return 1"),
                ("EVAL", "return 1", "0"),
                ("FLUSHALL",),
                ("HGETALL", own),
            ]
            for command in writes:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await api_user.execute_command(*command)
            # Reads outside its prefix are refused as well.
            with pytest.raises(redis.exceptions.NoPermissionError):
                await api_user.hmget("ch:{t0}:a:acct-1", ["currency"])
            assert await worker.hget(own, "balance") == b"1000000"  # unchanged
            refused = {e["username"] for e in await ops.acl_log(count=200)}
            assert refused == {API_USER}
        finally:
            for client_ in (ops, worker, api_user):
                await client_.aclose()
