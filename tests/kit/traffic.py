"""A steady stream of SMS, ring-through attempts and calls, with what it must cost; a
stream of texts played at a pace for as long as a test needs; and how far the ledger and
the balances are from that after a run."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from charger.charging.ledger import entry_id
from charger.protocol.keys import slot_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.records import call_attempt, call_ended, call_started, routed, sms_sent

OPENING = 100_000_000
SMS_PER_SEGMENT = 7_900  # std-usd, outbound
RING_THROUGH = 10_000
CALL_PER_SECOND = 10_000  # std-usd to "1": 0.60/min, 1/1 increments

Round = list[tuple[str, str, dict[str, Any]]]


def traffic(
    run: Run, accounts: list[str], rounds: int
) -> tuple[list[Round], dict[str, int], set[str]]:
    """Rounds of events over `accounts`; the closing balances and ledger ids they must make.

    Every account opens with OPENING (credited by the caller).
    """
    u = run.uid
    balances = dict.fromkeys(accounts, OPENING)
    ids: set[str] = set()
    out = []
    for r in range(rounds):
        batch: Round = []
        for n, acct in enumerate(accounts):
            kind = (r + n) % 3
            eid = f"{kind}-{r}-{n}-{u}"
            if kind == 0:
                segments = 1 + (r % 3)
                batch.append(
                    routed(sms_sent(run, acct, eid, message_id=f"m{eid}", segments=segments))
                )
                balances[acct] -= segments * SMS_PER_SEGMENT
                ids.add(f"ev:{eid}:sms_out")
            elif kind == 1:
                batch.append(routed(call_attempt(run, acct, eid, call_id=f"r{eid}")))
                balances[acct] -= RING_THROUGH
                ids.add(f"ev:{eid}:ring_through")
            else:
                seconds = 5 + r % 50
                call = f"k{eid}"
                started = call_started(run, acct, f"s{eid}", call_id=call, to="+14155550123")
                ended = call_ended(run, acct, f"e{eid}", call_id=call, duration_ms=seconds * 1000)
                batch += [routed(started), routed(ended)]
                balances[acct] -= seconds * CALL_PER_SECOND
                ids.add(f"ev:e{eid}:call")
        out.append(batch)
    return out, balances, ids


async def open_accounts(run: Run, name: str, count: int) -> list[str]:
    """`count` accounts of the run, `name` and a number each, opened with OPENING."""
    accounts = [run.acct(f"{name}{i}") for i in range(count)]
    for account in accounts:
        await run.account(account, credit=OPENING)
    return accounts


class TextStream:
    """Outbound texts over `accounts`, round robin at `per_second`; the ledger ids and
    closing balances they must make (accounts opened with OPENING)."""

    def __init__(self, run: Run, accounts: list[str], per_second: float) -> None:
        self.run = run
        self.accounts = accounts
        self.period = 1 / per_second
        self.ledger_ids: set[str] = set()
        self.balances = dict.fromkeys(accounts, OPENING)
        self.sent = 0
        self._stopped = asyncio.Event()

    async def play(self, count: int | None = None) -> None:
        """Send `count` more texts, or until `stop()`; each acknowledged by the broker."""
        self._stopped.clear()
        end = None if count is None else self.sent + count
        while not self._stopped.is_set() and self.sent != end:
            account = self.accounts[self.sent % len(self.accounts)]
            event_id = f"t{self.sent}-{self.run.uid}"
            text = sms_sent(self.run, account, event_id)
            await self.run.send(names.TELEPHONY_EVENTS, account, text)
            self.ledger_ids.add(entry_id("ev", event_id, "sms_out"))
            self.balances[account] -= SMS_PER_SEGMENT
            self.sent += 1
            with contextlib.suppress(TimeoutError):  # the pace, cut short by stop()
                await asyncio.wait_for(self._stopped.wait(), self.period)

    def stop(self) -> None:
        self._stopped.set()


async def open_accounts_per_slot(run: Run, name: str, per_slot: int) -> list[str]:
    """`per_slot` accounts in every slot (partition) of the run, opened with OPENING."""
    slots = run.settings.partitions
    chosen: dict[int, list[str]] = {slot: [] for slot in range(slots)}
    n = 0
    while any(len(found) < per_slot for found in chosen.values()):
        account = run.acct(f"{name}{n}")
        n += 1
        found = chosen[slot_of(account, slots)]
        if len(found) < per_slot:
            found.append(account)
    accounts = [account for found in chosen.values() for account in found]
    for account in accounts:
        await run.account(account, credit=OPENING)
    return accounts


async def stream(run: Run, rounds: list[Round], warmup: int = 20) -> asyncio.Task[None]:
    """Produce `rounds` ten a second; returns once `warmup` rounds are out.

    During a broker outage the producer holds what it is given until the broker is back.
    """
    started = asyncio.Event()

    async def produce() -> None:
        for i, batch in enumerate(rounds):
            await run.send_all(batch)
            if i == warmup:
                started.set()
            await asyncio.sleep(0.1)

    task = asyncio.create_task(produce())
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()  # the producer's error, if it failed
    return task


@dataclass(frozen=True)
class Tally:
    """How far a run's outputs are from what its traffic must have left."""

    lost: int  # expected ledger entries that are missing
    invented: int  # ledger entries nobody asked for
    doubled: int  # an entry id with two different payloads, or an event with two entries
    mismatched: int  # accounts whose balance is not what the prices say or its ledger sum
    republished: int  # entries published again byte for byte (readers dedupe by id)


async def tally(run: Run, balances: dict[str, int], ids: set[str]) -> Tally:
    """Compare the run's ledger topic and balances with `traffic`'s expectations
    (every account opened with a credit, as `open_accounts` does)."""
    raw = await run.outputs(names.LEDGER)
    ledger = [out.json() for out in raw]
    payloads: dict[str, set[bytes]] = {}
    for entry, out in zip(ledger, raw, strict=True):
        payloads.setdefault(entry["id"], set()).add(out.value)
    by_id = {e["id"]: e for e in ledger}
    wanted = ids | {f"ac:cr-{account}:topup" for account in balances}
    per_cause = Counter(e["source_event_id"] for e in by_id.values())
    doubled = sum(len(p) > 1 for p in payloads.values()) + sum(n > 1 for n in per_cause.values())
    mismatched = 0
    for account, closing in balances.items():
        ledger_sum = sum(e["amount_micros"] for e in by_id.values() if e["account"] == account)
        mismatched += not (await run.balance(account) == ledger_sum == closing)
    return Tally(
        lost=len(wanted - set(by_id)),
        invented=len(set(by_id) - wanted),
        doubled=doubled,
        mismatched=mismatched,
        republished=len(ledger) - len(by_id),
    )
