"""The baseline: what a user would write with Faust alone.

A `faust.App` agent on `telephony.events` decodes each event, rates it with
`charger.rating` and the account's plan (an in-memory dict), debits the balance with one
small Lua script call per event and sends one ledger record per event to its own topic.
No dedupe, no holds, no outbox: this is the simple version, not an equivalent one.

Run as ``python -m charger_tools.bench.faust_agent SPEC.json``; it writes its progress to the
spec's `stats` file twice a second and runs until SIGTERM.

SPEC: {"bootstrap", "redis_url", "prefix", "app_id", "ledger_topic", "stats", "datadir",
       "accounts": {account: [currency, plan]}}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from redis.asyncio import Redis

from charger.rating import call_charge, load_plans, sms_charge
from charger.runtime import default_plans_path
from charger_tools.bench.proc import write_json
from charger_topics import names

# One event, one call: move the balance, return what is left.
DEBIT_ONE = "return redis.call('HINCRBY', KEYS[1], 'bal', ARGV[1])"


class Progress:
    def __init__(self) -> None:
        self.count = 0
        self.bad = 0
        self.first: float | None = None
        self.last: float | None = None
        # Where the agent's time went: awaiting Redis, awaiting the send, the rest.
        self.redis_s = 0.0
        self.send_s = 0.0

    def doc(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "bad": self.bad,
            "first": self.first,
            "last": self.last,
            "redis_s": round(self.redis_s, 3),
            "send_s": round(self.send_s, 3),
        }


def amount_of(doc: dict[str, Any], plan: Any) -> int:
    """The signed movement of one decoded event under its plan (KeyError when it lacks one)."""
    typ = doc["type"]
    if typ == "call.ended":
        rate = plan.voice_rate(doc["direction"], doc["to"])
        return -int(call_charge(doc["duration_ms"], rate).amount_micros) if rate else 0
    if typ == "call.attempt":
        return -int(plan.ring_through_micros)
    if typ in ("sms.sent", "sms.received"):
        return -sms_charge(plan, typ == "sms.sent", doc.get("segments", 1))
    if typ == "call.started":
        return 0
    raise KeyError(typ)


def build(spec: dict[str, Any]) -> faust.App:
    app = faust.App(
        spec["app_id"],
        broker=f"kafka://{spec['bootstrap']}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        autodiscover=False,
        broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        datadir=spec["datadir"],
    )
    events = app.topic(names.TELEPHONY_EVENTS, key_serializer="raw", value_serializer="raw")
    ledger = app.topic(spec["ledger_topic"], key_serializer="raw", value_serializer="raw")
    redis = Redis.from_url(spec["redis_url"])
    debit = redis.register_script(DEBIT_ONE)
    plans = load_plans(default_plans_path())
    accounts: dict[str, list[str]] = spec["accounts"]
    prefix: str = spec["prefix"]
    progress = Progress()
    stats = Path(spec["stats"])

    async def charge(stream: Any) -> None:
        async for key, value in stream.items():
            now = time.monotonic()
            if progress.first is None:
                progress.first = now
            progress.count += 1
            try:
                doc = orjson.loads(value)
                account = doc["account"]
                currency, plan_id = accounts[account]
                amount = amount_of(doc, plans[plan_id])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                progress.bad += 1
                progress.last = time.monotonic()
                continue
            t0 = time.monotonic()
            balance = await debit(keys=[f"{prefix}:a:{account}"], args=[amount])
            t1 = time.monotonic()
            progress.redis_s += t1 - t0
            entry = {
                "id": f"faust:{doc['id']}",
                "account": account,
                "time": doc["time"],
                "kind": doc["type"],
                "amount_micros": amount,
                "currency": currency,
                "balance_after_micros": int(balance),
                "source_event_id": doc["id"],
            }
            await ledger.send(key=key, value=orjson.dumps(entry))
            progress.last = time.monotonic()
            progress.send_s += progress.last - t1

    app.agent(events, name="charge")(charge)

    async def report() -> None:
        write_json(stats, progress.doc())

    app.timer(interval=0.5)(report)
    return app


def main() -> None:
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    app = build(spec)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
