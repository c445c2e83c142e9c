"""The outputs apply.lua leaves in a slot's outbox, and how they are read back.

apply.lua writes the outputs of one call as one outbox entry: a field `outputs` holding a
MessagePack array of arrays `[kind, field values...]`, the values in the order of the
`NamedTuple` of that kind below. The Lua prelude generates one emitter per kind from these
definitions (`emit_ledger_entry(account, ledger_head, ...)`), so neither side counts
positions by hand. An optional value the script does not have travels as `false` and
reads back as None; values an entry lacks at its end (written by an earlier build) take
the field's default, values past its fields (a later build's) are ignored. Text travels as
bytes: what is published as bytes (keys, ledger heads, refused records) is never decoded,
and the documents (`charging.documents`) decode the rest.

Every output ends with `trace`, the trace context of the op that made it
(`charger.events.tracecontext`): the script appends it itself, from the op it is applying
(no emitter takes it as a parameter), and an output of a tick has none (b"").
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

# The stream field of an outbox entry that holds its outputs.
OUTBOX_FIELD = b"outputs"
# The last field of every output: filled by the script, not passed to its emitter.
CAUSE_FIELD = "trace"


class OutputKind(IntEnum):
    LEDGER_ENTRY = 1
    FLOOR_CROSSED = 2
    CALL_CUT = 3
    SESSION_EXPIRED = 4
    RECHARGE_REQUESTED = 5
    RECHARGE_DECLINED = 6
    RECHARGE_TIMED_OUT = 7
    REFUSED = 8
    FEE_APPLIED = 9
    FEE_REFUSED = 10
    LOW_BALANCE = 11


class LedgerEntry(NamedTuple):
    """Money moved: the planned ledger head and the balance the movement left."""

    account: bytes
    ledger_head: bytes
    balance_after_micros: int
    kind: bytes
    currency: bytes
    amount_micros: int
    time: bytes  # the causing record's time (RFC 3339)
    trace: bytes = b""  # its cause's trace context (see the module notes)


class FloorCrossed(NamedTuple):
    """The available balance went to or below the floor (suspended), or above it again."""

    suspended: bool
    account: bytes
    cause: bytes  # id prefix of the commands: the movement or call that crossed it
    available_micros: int
    issued_at_ms: int  # when charger decided it
    effective_time: bytes | None  # when it took effect: the moving record's time, or
    effective_at_ms: int | None  # epoch ms when no record moved it (a cut, an expiry)
    balance_micros: int | None  # only when a movement crossed it: the balance it left
    notify_email: bytes | None  # only when suspended
    trace: bytes = b""  # its cause's trace context (see the module notes)


class CallCut(NamedTuple):
    """A call could not pay for its next increment: cut it at the instant its money ended."""

    account: bytes
    call_id: bytes
    cutoff_at_ms: int
    issued_at_ms: int
    notify_email: bytes
    trace: bytes = b""  # its cause's trace context (see the module notes)


class SessionExpired(NamedTuple):
    """A call's end never came: its session TTL charged what it held."""

    account: bytes
    call_id: bytes
    amount_micros: int
    balance_after_micros: int
    issued_at_ms: int
    covered_s: int
    price_per_minute_micros: int
    currency: bytes
    trace: bytes = b""  # its cause's trace context (see the module notes)


class RechargeRequested(NamedTuple):
    account: bytes
    request_id: bytes
    amount_micros: int
    available_micros: int
    balance_micros: int
    threshold_micros: int
    currency: bytes
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


class RechargeDeclined(NamedTuple):
    account: bytes
    request_id: bytes
    reason: bytes
    available_micros: int
    threshold_micros: int
    notify_email: bytes
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


class RechargeTimedOut(NamedTuple):
    account: bytes
    request_id: bytes
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


class Refused(NamedTuple):
    """A refused record (see `ops.Refuse`), as it goes to the DLQ."""

    key: bytes | None
    value: bytes | None
    reason: bytes
    detail: bytes
    source_topic: bytes
    source_partition: int
    source_offset: int
    event_id: bytes
    # Defaults: what an outbox entry of a build before these fields reads as.
    timestamp_ms: int = -1
    timestamp_type: int = -1  # NoTimestampType
    headers: bytes = b""  # packed (charging.refusals.unpack_headers)
    headers_dropped: int = 0
    trace: bytes = b""  # its cause's trace context (see the module notes)


class FeeApplied(NamedTuple):
    """A fee.charged was debited: its ledger entry and the balance it left."""

    account: bytes
    fee_id: bytes
    ledger_entry_id: bytes
    amount_micros: int
    balance_after_micros: int
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


class FeeRefused(NamedTuple):
    """A fee.charged that requires funds found the available balance short."""

    account: bytes
    fee_id: bytes
    reason: bytes
    available_micros: int
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


class LowBalance(NamedTuple):
    """The available balance crossed below the account's low-balance level."""

    account: bytes
    crossing: int  # the account's crossings so far: names the notice
    available_micros: int
    threshold_micros: int
    notify_email: bytes
    issued_at_ms: int
    trace: bytes = b""  # its cause's trace context (see the module notes)


Output = (
    LedgerEntry
    | FloorCrossed
    | CallCut
    | SessionExpired
    | RechargeRequested
    | RechargeDeclined
    | RechargeTimedOut
    | Refused
    | FeeApplied
    | FeeRefused
    | LowBalance
)

TYPES: dict[OutputKind, type[Output]] = {
    OutputKind.LEDGER_ENTRY: LedgerEntry,
    OutputKind.FLOOR_CROSSED: FloorCrossed,
    OutputKind.CALL_CUT: CallCut,
    OutputKind.SESSION_EXPIRED: SessionExpired,
    OutputKind.RECHARGE_REQUESTED: RechargeRequested,
    OutputKind.RECHARGE_DECLINED: RechargeDeclined,
    OutputKind.RECHARGE_TIMED_OUT: RechargeTimedOut,
    OutputKind.REFUSED: Refused,
    OutputKind.FEE_APPLIED: FeeApplied,
    OutputKind.FEE_REFUSED: FeeRefused,
    OutputKind.LOW_BALANCE: LowBalance,
}
# Per kind, the fields the script may not have: they travel as `false`, read back as None.
OPTIONAL: dict[type[Output], frozenset[str]] = {
    FloorCrossed: frozenset(
        {"effective_time", "effective_at_ms", "balance_micros", "notify_email"}
    ),
    Refused: frozenset({"key", "value"}),  # a null key or value
}
_BY_CODE: dict[int, type[Output]] = {int(kind): cls for kind, cls in TYPES.items()}
_CODE_OF: dict[type[Output], int] = {cls: code for code, cls in _BY_CODE.items()}
# Values past an output's fields (a later build's additions) are ignored when read back.
_SIZE: dict[type[Output], int] = {cls: len(cls._fields) for cls in _BY_CODE.values()}
# The positions of the optional fields among an output's values, for the decoder.
_OPTIONAL_AT: dict[type[Output], tuple[int, ...]] = {
    cls: tuple(i for i, name in enumerate(cls._fields) if name in names)
    for cls, names in OPTIONAL.items()
}


def decode_entry(fields: dict[bytes, bytes]) -> list[Output]:
    """The outputs of one outbox entry (its stream fields), in the order they were made."""
    packed = fields.get(OUTBOX_FIELD)
    if packed is None:
        raise ValueError(f"outbox entry without {OUTBOX_FIELD.decode()!r}: {sorted(fields)}")
    outputs: list[Output] = []
    for item in msgpack.unpackb(packed, raw=True):
        cls = _BY_CODE.get(item[0])
        if cls is None:
            raise ValueError(f"unknown output kind {item[0]!r}")
        values: list[Any] = item[1 : _SIZE[cls] + 1]
        for i in _OPTIONAL_AT.get(cls, ()):
            if values[i] is False:
                values[i] = None
        outputs.append(cls(*values))
    return outputs


def encode_entry(outputs: list[Output]) -> dict[bytes, bytes]:
    """The stream fields apply.lua would write for `outputs` (for tests and tools)."""
    items = [
        [_CODE_OF[type(output)], *(False if value is None else value for value in output)]
        for output in outputs
    ]
    return {OUTBOX_FIELD: msgpack.packb(items, use_bin_type=False)}
