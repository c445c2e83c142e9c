"""Reads what the checker needs: output topics from given offsets, and Redis state."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.protocol import fields as F
from charger.protocol.keys import Keys, slot_of
from charger.store.client import RedisClient
from charger_tools.chaos.checker import READ_BACK, Expected, Observed
from charger_tools.reading import answered
from charger_topics import headers, names

Read = tuple[bytes, dict[str, bytes], int]  # value, headers, broker timestamp


async def read_topics(
    bootstrap: str, marks: dict[TopicPartition, int], topics: Iterable[str]
) -> dict[str, list[Read]]:
    """Everything on `topics` from `marks` on.

    End offsets of the embedded broker can lag behind batched writes, so reading stops
    only once past them and a fetch comes back empty.
    """
    wanted = set(topics)
    tps = [tp for tp in marks if tp.topic in wanted]
    out: dict[str, list[Read]] = {t: [] for t in wanted}
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000
    )
    await c.start()
    try:
        c.assign(tps)
        ends = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, marks[tp])
        while True:
            ready = answered(c, tps)
            data = await c.getmany(timeout_ms=500)
            behind = [tp for tp in tps if await c.position(tp) < ends[tp]]
            if not data and not behind and ready:
                return out
            for tp, msgs in data.items():
                out[tp.topic] += [
                    (m.value or b"", dict(m.headers or ()), m.timestamp) for m in msgs
                ]
    finally:
        await c.stop()


async def observe(
    bootstrap: str,
    marks: dict[TopicPartition, int],
    redis: RedisClient,
    keys: Keys,
    accounts: list[str],
    expected: list[Expected],
) -> Observed:
    """The outputs and the Redis state the invariants are checked against."""
    got = await read_topics(bootstrap, marks, READ_BACK)
    seen = Observed(
        ledger=[v for v, _, _ in got[names.LEDGER]],
        charge_results=[v for v, _, _ in got[names.CHARGE_RESULTS]],
        dlq=[(v, h.get(headers.ERROR, b"?").decode()) for v, h, _ in got[names.DLQ]],
        commands=[(v, ts) for v, _, ts in got[names.TELEPHONY_COMMANDS]],
    )
    pipe = redis.pipeline(transaction=False)
    for a in accounts:
        fields = [F.AccountField.BALANCE, F.AccountField.HELD, F.AccountField.CURRENCY]
        pipe.hmget(keys.account_of(a), fields)
    calls = [(e.account, e.call_id) for e in expected if e.type == "call.started"]
    for acct, call_id in calls:
        pipe.hget(keys.call(slot_of(acct, keys.slots), acct, call_id), F.CallField.STATE)
    requests = [(e.account, e.request_id) for e in expected if e.type == "recharge.result"]
    for acct, rid in requests:
        pipe.hget(keys.account_of(acct), F.request_state(rid))
    for slot in range(keys.slots):
        pipe.zcard(keys.sessions(slot))
    res = await pipe.execute()
    i = 0
    for a in accounts:
        bal, held, cur = res[i]
        seen.balances[a] = None if cur is None else int(bal or 0)
        seen.held[a] = int(held or 0)
        i += 1
    for where in calls:
        seen.call_states[where] = None if res[i] is None else res[i].decode()
        i += 1
    for where in requests:
        seen.request_states[where] = None if res[i] is None else res[i].decode()
        i += 1
    seen.active_sessions = sum(res[i:])
    return seen
