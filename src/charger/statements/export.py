"""A statement as CSV (RFC 4180, a header row, CRLF line ends). Pure.

One row per entry, in statement order. Money both as the exact integer of micro-units
(what a program should read) and as a decimal (what a person reads). Text that comes
from outside charger (call and event ids, descriptions) and starts like a spreadsheet
formula gets a leading apostrophe, so opening the file cannot run it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from charger.events.timefmt import format_time_ms
from charger.money import format_micros
from charger.statements.model import StatementEntry

__all__ = ["COLUMNS", "csv_lines", "entry_line", "entry_row", "header_line"]

COLUMNS: Final = (
    "id",
    "time",
    "local_date",
    "kind",
    "amount",
    "amount_micros",
    "balance_after_micros",
    "currency",
    "quantity",
    "unit",
    "unit_price_micros",
    "call_id",
    "source_event_id",
    "description",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _outside_text(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def entry_row(entry: StatementEntry, zone: ZoneInfo) -> list[str]:
    doc = entry.document
    instant_ms = (entry.occurred_at - _EPOCH) // timedelta(milliseconds=1)
    return [
        entry.entry_id,
        format_time_ms(instant_ms),
        entry.occurred_at.astimezone(zone).date().isoformat(),
        entry.kind,
        format_micros(entry.amount_micros),
        str(entry.amount_micros),
        str(entry.balance_after_micros),
        entry.currency,
        _number(doc.get("quantity")),
        str(doc.get("unit", "")),
        _number(doc.get("unit_price_micros")),
        _outside_text(doc.get("call_id")),
        _outside_text(doc.get("source_event_id")),
        _outside_text(doc.get("description") or doc.get("reason")),
    ]


def _line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


def header_line() -> str:
    return _line(COLUMNS)


def entry_line(entry: StatementEntry, zone: ZoneInfo) -> str:
    return _line(entry_row(entry, zone))


def csv_lines(entries: Iterable[StatementEntry], zone: ZoneInfo) -> Iterator[str]:
    """The header, then one line per entry (each with its CRLF), ready to stream."""
    yield header_line()
    for entry in entries:
        yield entry_line(entry, zone)
