"""Statement cursors: where the next page starts, opaque to clients and bound to a query. Pure.

A statement lists entries in the order (`occurred_at`, ledger partition, ledger offset):
time order, and entries of one instant in the order they were published, which is the
order the worker moved the money. A cursor names the last entry of a page by that key, so
the next page starts right after it — stable while entries are added (a new entry dated
earlier than the cursor is not shown on later pages: it is on the first ones when asked
again).

The cursor carries a checksum over the query it was issued for (account, range, filter),
so a cursor given with another query, changed or made up is refused (`InvalidCursor`)
rather than silently starting elsewhere. It is not a secret and protects nothing: the
query still names the account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from charger.statements.model import InvalidCursor, Show

__all__ = ["Position", "StatementQuery", "decode_cursor", "encode_cursor"]

VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY = b"charger-statement-cursor"
_TAG_BYTES = 8


@dataclass(frozen=True)
class StatementQuery:
    """What a cursor is bound to (the page size may change from page to page)."""

    account: str
    start: datetime
    end: datetime
    show: Show

    def identity(self) -> bytes:
        return orjson.dumps([self.account, _micros(self.start), _micros(self.end), str(self.show)])


@dataclass(frozen=True)
class Position:
    """The sort key of the last entry of a page."""

    occurred_at: datetime
    partition: int
    offset: int


def _micros(instant: datetime) -> int:
    if instant.tzinfo is None:
        raise ValueError("statement times must be timezone-aware")
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(query: StatementQuery, payload: bytes) -> bytes:
    return hashlib.blake2b(
        query.identity() + b"\0" + payload, key=_KEY, digest_size=_TAG_BYTES
    ).digest()


def encode_cursor(query: StatementQuery, position: Position) -> str:
    payload = orjson.dumps(
        [VERSION, _micros(position.occurred_at), position.partition, position.offset]
    )
    return f"{_b64(payload)}.{_b64(_tag(query, payload))}"


def decode_cursor(query: StatementQuery, cursor: str) -> Position:
    """The position `cursor` names; InvalidCursor unless it was issued for `query`."""
    body, dot, tag = cursor.partition(".")
    try:
        if not dot or not cursor.isascii():
            raise ValueError("not a cursor")
        payload = _unb64(body)
        if _unb64(tag) != _tag(query, payload):
            raise ValueError("issued for another query")
        version, at_us, partition, offset = orjson.loads(payload)
        if version != VERSION or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (at_us, partition, offset)
        ):
            raise ValueError("not a cursor of this version")
        return Position(EPOCH + timedelta(microseconds=at_us), partition, offset)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError, OverflowError) as exc:
        raise InvalidCursor(f"invalid cursor: {exc}") from None
