"""The batch loop survives failures outside a batch (found by the chaos run).

Redis answered "loading the dataset" while a worker drained its outbox before a fetch;
the error escaped the loop and the worker kept running with its batch loop dead. Here the
outbox drain fails twice on the real stack, and the loop must carry on charging.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import BusyLoadingError

from charger.runtime import Runtime
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.records import sms_sent


async def test_batch_loop_survives_a_failing_outbox_drain(run: Run) -> None:
    rt = Runtime(run.settings_with(tick_ms=0))
    real_drain = rt.relay.drain
    failures = 0

    async def flaky_drain(slots: Any) -> Any:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise BusyLoadingError("loading the dataset in memory")
        return await real_drain(slots)

    rt.relay.drain = flaky_drain  # type: ignore[method-assign]
    await rt.start()
    try:
        acct = run.acct("loop")
        await run.account(acct, credit=1_000_000)
        sms = sms_sent(run, acct, f"sms-{acct}", message_id="m-1", segments=1)
        await run.send(names.TELEPHONY_EVENTS, acct, sms)
        await run.wait_idle(60)
        assert failures == 2
        assert rt.running(), "the batch loop died"
        assert await run.balance(acct) == 1_000_000 - 7_900
        kinds = sorted(e["kind"] for e in await run.ledger())
        assert kinds == ["sms_out", "topup"]
        errors = rt.metrics.errors.labels("batch")._value.get()
        assert errors >= 2
    finally:
        await asyncio.wait_for(rt.stop(), 30)
