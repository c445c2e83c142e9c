"""A steady stream of SMS, ring-through attempts and calls, with what it must cost; and a
stream of texts played at a pace for as long as a test needs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from charger.charging.ledger import entry_id
from tests.kit.harness import Run
from tests.kit.records import call_attempt, call_ended, call_started, routed, sms_sent
from topics import names

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
