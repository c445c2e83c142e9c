"""Did every event move money exactly once? The ledger read back, judged by id.

`lost`: an expected ledger id that never reached the ledger. `doubled`: a ledger id
published with different contents (an effect applied twice; the same entry published
again, byte for byte, is only `republished`), or one no event of the test should have
made. `mismatched`: an account whose ledger sum (one copy per id) is not its balance in
Redis, or not the balance the test worked out.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.kit.harness import Run


@dataclass
class LedgerCheck:
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[int, int]] = field(default_factory=dict)  # ledger, balance
    republished: int = 0
    entries: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "lost": len(self.lost),
            "doubled": len(self.doubled),
            "mismatched": len(self.mismatched),
            "republished": self.republished,
            "entries": self.entries,
        }


async def check_ledger(
    run: Run, expected: Iterable[str], balances: Mapping[str, int | None]
) -> LedgerCheck:
    """Judge the run's ledger against the ledger ids the test's events must each make once,
    and each account of `balances` against its balance in Redis (and the given one)."""
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in await run.ledger():
        copies[entry["id"]].append(entry)
    wanted = set(expected)
    check = LedgerCheck(entries=len(copies))
    for ledger_id, same_id in copies.items():
        if ledger_id not in wanted or any(copy != same_id[0] for copy in same_id):
            check.doubled.append(ledger_id)
        check.republished += len(same_id) - 1
    check.lost = sorted(wanted - copies.keys())
    for account, worked_out in balances.items():
        ledger = sum(c[0]["amount_micros"] for c in copies.values() if c[0]["account"] == account)
        balance = await run.balance(account)
        if ledger != balance or worked_out not in (None, balance):
            check.mismatched[account] = (ledger, balance)
    return check


async def check_complete_ledger(
    run: Run, expected: Iterable[str], balances: Mapping[str, int | None], timeout: float = 60
) -> LedgerCheck:
    """`check_ledger` once every expected id can be read back (the embedded broker's reads
    trail its writes under load), or the last check after `timeout` seconds."""
    wanted = set(expected)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        check = await check_ledger(run, wanted, balances)
        if not check.lost or loop.time() > deadline:
            return check
        await asyncio.sleep(0.5)
