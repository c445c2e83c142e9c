"""The worker on a locked-down Redis: the deploy ACL file, AUTH, TLS, and no secret in sight.

A Valkey of its own loads deploy/redis/users.acl — the file itself, with only the worker's
key pattern changed from ``~ch:*`` to this run's prefix (the pattern follows
CHARGER_REDIS_PREFIX). The real `charger worker` process then charges as the restricted
user `charger`: accounts, credits, SMS, a call, an auto-recharge and its result, a bad
record, ticks and the metrics sampler. Valkey's own books must show that nothing was
refused (`ACL LOG` empty, no rejected call), and the same user must get NOPERM for
everything outside its grant.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis

from charger_tools.embedded import HOST
from tests.kit.acl import WORKER_USER
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
from tests.kit.servers import Locked
from tests.kit.waits import until
from tests.kit.worker import Worker
from topics import names

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
