"""Graceful shutdown: SIGTERM in the middle of a load loses nothing and repeats nothing.

A `charger worker` process charges a steady stream of SMS, ring-through attempts and calls.
While the stream is still being produced it receives SIGTERM: it must stop fetching,
finish and commit the batch in hand, flush its outputs and exit 0 within the grace period
the deploy files give it. A second worker then takes over the rest. Every event has
exactly one ledger entry, no entry is published twice, and every balance is what the
prices say.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import yaml

from charger_topics import names
from tests.kit.harness import Run
from tests.kit.traffic import open_accounts, traffic
from tests.kit.worker import Worker

DEPLOYMENT = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "deployment.yaml"


def grace_period_s() -> float:
    """terminationGracePeriodSeconds of the Kubernetes Deployment."""
    doc = yaml.safe_load(DEPLOYMENT.read_text())
    return float(doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


async def test_sigterm_mid_load_exits_in_time_and_a_restart_neither_loses_nor_repeats(
    run: Run,
) -> None:
    grace = grace_period_s()
    accounts = await open_accounts(run, "t", 24)
    rounds, balances, ids = traffic(run, accounts, rounds=60)
    expected_events = sum(len(b) for b in rounds)
    credits = {f"ac:cr-{a}:topup" for a in accounts}

    first = Worker(run)
    second: Worker | None = None
    try:
        await run.wait_idle(120)  # joined the group and charged the opening credits
        await first.started()

        sent = asyncio.Event()
        half = asyncio.Event()

        async def produce() -> None:
            for i, batch in enumerate(rounds):
                await run.send_all(batch)
                if i == len(rounds) // 3:
                    half.set()
                await asyncio.sleep(0.05)
            sent.set()

        producer = asyncio.create_task(produce())
        await half.wait()
        lag_before = await run.committed_lag()
        began = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        code = await first.wait(grace)
        took = time.monotonic() - began
        assert code == 0, first.tail()
        assert took < grace, f"exit took {took:.1f}s, grace is {grace}s"
        # It really was mid-load: records kept coming after the worker had gone.
        assert not sent.is_set(), "the load ended before the worker was stopped"
        assert lag_before < expected_events

        second = Worker(run)
        await producer
        await run.wait_idle(120)
        assert second.stop() == 0, second.tail()
    finally:
        first.kill()
        if second is not None:
            second.kill()

    ledger = await run.ledger()
    got = [e["id"] for e in ledger]
    assert len(got) == len(set(got)), "a ledger entry was published twice"
    assert set(got) == ids | credits
    for acct, closing in balances.items():
        assert await run.balance(acct) == closing, acct
        mine = [e for e in ledger if e["account"] == acct]
        assert sum(e["amount_micros"] for e in mine) == closing
    assert await run.committed_lag() == 0
    assert await run.outbox_backlog() == 0
    assert await run.outputs(names.DLQ) == []
