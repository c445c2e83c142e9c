"""Readers of a run's outputs: ledger entries, switch commands, notifications, requests."""

from __future__ import annotations

from typing import Any

from charger_topics import names
from tests.kit.harness import Run

Document = dict[str, Any]


async def entries(run: Run, account: str, kind: str | None = None) -> list[Document]:
    """The ledger entries of `account` (of one `kind` if given), in ledger order."""
    return [
        e
        for e in await run.ledger()
        if e["account"] == account and (kind is None or e["kind"] == kind)
    ]


async def commands(run: Run, typ: str | None = None, account: str | None = None) -> list[Document]:
    """The commands to the switch, of one type and for one account if given."""
    docs = [o.json() for o in await run.outputs(names.TELEPHONY_COMMANDS)]
    return [
        d
        for d in docs
        if (typ is None or d["type"] == typ) and (account is None or d["account"] == account)
    ]


async def cutoffs(run: Run) -> list[Document]:
    return await commands(run, "call.cutoff")


async def commands_for(run: Run, account: str) -> list[Document]:
    return await commands(run, account=account)


async def notifications(run: Run) -> list[Document]:
    return [o.json() for o in await run.outputs(names.NOTIFICATIONS)]


async def recharge_requests(run: Run) -> list[Document]:
    return [o.json() for o in await run.outputs(names.RECHARGE_REQUESTS)]


async def charge_results(run: Run, account: str | None = None) -> list[Document]:
    """fee.applied and fee.refused, for one account if given."""
    docs = [o.json() for o in await run.outputs(names.CHARGE_RESULTS)]
    return [d for d in docs if account is None or d["account"] == account]
