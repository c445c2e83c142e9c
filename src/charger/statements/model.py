"""What a statement is made of: entries of one account in time order, and its local days. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Show(StrEnum):
    """Which entries a statement lists: all, debits only or credits only (the seeds' filter)."""

    ALL = "all"
    DEBITS = "debits"
    CREDITS = "credits"


class InvalidCursor(ValueError):
    """A cursor this reader did not issue (or issued for another query)."""


@dataclass(frozen=True)
class StatementEntry:
    """One stored ledger entry: the published document and the columns a statement needs."""

    entry_id: str
    account: str
    kind: str
    # Signed, as on the ledger topic: debits negative, credits positive.
    amount_micros: int
    balance_after_micros: int
    currency: str
    # When the movement happened, UTC and timezone-aware: what dates it on a statement.
    occurred_at: datetime
    # The ledger.entry record exactly as published (decoded JSON).
    document: Mapping[str, Any]


@dataclass(frozen=True)
class StatementPage:
    entries: tuple[StatementEntry, ...]
    # Opaque; None on the last page.
    next_cursor: str | None


@dataclass(frozen=True)
class DayMovement:
    """One local day of an account: the daily movement of funds."""

    day: date
    opening_balance_micros: int
    # Sums per ledger kind, both positive.
    debits_by_kind_micros: Mapping[str, int]
    credits_by_kind_micros: Mapping[str, int]
    closing_balance_micros: int
