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
from typing import Any

import yaml

from tests.integration.harness import Run
from tests.integration.test_crash import Worker
from topics import names

EV = names.TELEPHONY_EVENTS
AC = names.BILLING_ACCOUNTS
DEPLOYMENT = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "deployment.yaml"

OPENING = 100_000_000
SMS_PER_SEGMENT = 7_900  # std-usd, outbound
RING_THROUGH = 10_000
CALL_PER_SECOND = 10_000  # std-usd to "1": 0.60/min, 1/1 increments


def grace_period_s() -> float:
    """terminationGracePeriodSeconds of the Kubernetes Deployment."""
    doc = yaml.safe_load(DEPLOYMENT.read_text())
    return float(doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def traffic(
    run: Run, accounts: list[str], rounds: int
) -> tuple[list[list[tuple[str, str, dict[str, Any]]]], dict[str, int], set[str]]:
    """Rounds of events over `accounts`; the closing balances and ledger ids they must make."""
    u = run.uid
    balances = dict.fromkeys(accounts, OPENING)
    ids: set[str] = set()
    out = []
    for r in range(rounds):
        batch: list[tuple[str, str, dict[str, Any]]] = []
        for n, acct in enumerate(accounts):
            base = {"account": acct, "time": run.t0}
            kind = (r + n) % 3
            eid = f"{kind}-{r}-{n}-{u}"
            if kind == 0:
                segments = 1 + (r % 3)
                batch.append(
                    (
                        EV,
                        acct,
                        {
                            **base,
                            "id": eid,
                            "type": "sms.sent",
                            "message_id": f"m{eid}",
                            "to": "+14155550100",
                            "segments": segments,
                        },
                    )
                )
                balances[acct] -= segments * SMS_PER_SEGMENT
                ids.add(f"ev:{eid}:sms_out")
            elif kind == 1:
                batch.append(
                    (
                        EV,
                        acct,
                        {
                            **base,
                            "id": eid,
                            "type": "call.attempt",
                            "call_id": f"r{eid}",
                            "to": "+14155550100",
                        },
                    )
                )
                balances[acct] -= RING_THROUGH
                ids.add(f"ev:{eid}:ring_through")
            else:
                seconds = 5 + r % 50
                call = f"k{eid}"
                started = {
                    **base,
                    "id": f"s{eid}",
                    "type": "call.started",
                    "call_id": call,
                    "direction": "outbound",
                    "from": "+15550001",
                    "to": "+14155550123",
                }
                ended = {
                    **base,
                    "id": f"e{eid}",
                    "type": "call.ended",
                    "time": run.at(seconds),
                    "call_id": call,
                    "duration_ms": seconds * 1000,
                }
                batch += [(EV, acct, started), (EV, acct, ended)]
                balances[acct] -= seconds * CALL_PER_SECOND
                ids.add(f"ev:e{eid}:call")
        out.append(batch)
    return out, balances, ids


async def test_sigterm_mid_load_exits_in_time_and_a_restart_neither_loses_nor_repeats(
    run: Run,
) -> None:
    grace = grace_period_s()
    accounts = [run.acct(f"t{i}") for i in range(24)]
    for acct in accounts:
        await run.account(acct, credit=OPENING)
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
