"""The hot-path decoder: bytes in, a checked record or the reason it was refused.

Each record type of ``charger_topics.records`` is compiled once, at import, into a tuple of small
per-field check functions, so checking a record is a dict lookup and a few ``type() is``
tests per field. The rules are the published JSON Schemas' rules (a test checks that this
decoder and a JSON Schema validator agree), with one deliberate difference: a JSON number
with a fraction part, even ``1.0``, is not an integer here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from charger.events.fastcheck import compile_valid
from charger.events.timefmt import TIME_RE
from charger_topics import reasons
from charger_topics.records import COMMON, RECORDS, Field, RecordType

__all__ = ["MAX_DEPTH", "MAX_RECORD_BYTES", "REASONS", "Invalid", "decode", "too_deep"]

MAX_RECORD_BYTES: Final = 64 * 1024

# The decoder's codes, in the order of the checks (see charger_topics.reasons for what each means).
REASONS: Final = tuple(reasons.DECODER)
# orjson re-encodes at most this many levels of nesting (the fingerprint needs it).
MAX_DEPTH: Final = 254
_INT64: Final = 2**63
_BOM: Final = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a record was refused: ``reason`` is a short code (metric label, DLQ header),
    ``detail`` a sentence naming the field and the value."""

    reason: str
    detail: str


Check = Callable[[object], Invalid | None]
_MISSING: Final = object()
_JSON_TYPES: Final = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _wrong(where: str, expected: str, value: object) -> Invalid:
    return Invalid("wrong_type", f"{where} must be {expected}, got {_json_type(value)}")


def _string(where: str, f: Field) -> Check:
    longest = f.max_length

    def check(v: object) -> Invalid | None:
        if type(v) is not str:
            return _wrong(where, "a string", v)
        if not 0 < len(v) <= longest:
            # An empty id is a producer bug; a 400-digit number is an absurd size.
            reason = "value_too_large" if v else "out_of_range"
            return Invalid(reason, f"{where} must be 1 to {longest} characters, got {len(v)}")
        return None

    return check


def _time(where: str, f: Field) -> Check:
    match = TIME_RE.fullmatch

    def check(v: object) -> Invalid | None:
        if type(v) is not str:
            return _wrong(where, "a string", v)
        if match(v) is None:
            return Invalid(
                "invalid_time",
                f"{where} must be RFC 3339 UTC with milliseconds like "
                f"2026-11-22T10:00:00.000Z, got {_shown(v)}",
            )
        return None

    return check


def _integer(where: str, f: Field) -> Check:
    lo, hi = f.minimum, f.maximum

    def check(v: object) -> Invalid | None:
        if type(v) is not int:  # excludes bool, and floats even when whole
            if type(v) is float and v == v and abs(v) >= _INT64:
                # orjson reads an integer literal beyond 64 bits as a float: say so.
                bound = "a 64-bit integer" if hi is None else f"an integer <= {hi}"
                return Invalid("value_too_large", f"{where} must be {bound}, got {v:.4g}")
            return _wrong(where, "an integer", v)
        if lo is not None and v < lo:
            if v < 0 <= lo:
                return Invalid("negative_value", f"{where} must not be negative, got {v}")
            reason = "value_too_large" if lo < 0 else "out_of_range"  # lo < 0: a huge debit
            return Invalid(reason, f"{where} must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            return Invalid("value_too_large", f"{where} must be <= {hi}, got {v}")
        return None

    return check


def _boolean(where: str, f: Field) -> Check:
    def check(v: object) -> Invalid | None:
        return None if type(v) is bool else _wrong(where, "true or false", v)

    return check


def _enum(where: str, f: Field) -> Check:
    allowed = frozenset(f.values)
    listed = ", ".join(f.values)

    def check(v: object) -> Invalid | None:
        if type(v) is not str:
            return _wrong(where, f"one of {listed}", v)
        if v not in allowed:
            return Invalid("out_of_range", f"{where} must be one of {listed}, got {_shown(v)}")
        return None

    return check


def _object(where: str, f: Field) -> Check:
    members = _members(where + ".", f.fields, f.optional)

    def check(v: object) -> Invalid | None:
        if type(v) is not dict:
            return _wrong(where, "an object", v)
        return _check_members(members, v) if members else None

    return check


_BUILDERS: Final[dict[str, Callable[[str, Field], Check]]] = {
    "string": _string,
    "time": _time,
    "integer": _integer,
    "boolean": _boolean,
    "enum": _enum,
    "object": _object,
}

Members = tuple[tuple[str, bool, str, Check], ...]  # (name, required, where, check)


def _members(prefix: str, fields: dict[str, Field], optional: frozenset[str]) -> Members:
    return tuple(
        (name, name not in optional, prefix + name, _BUILDERS[f.kind](prefix + name, f))
        for name, f in fields.items()
    )


def _check_members(members: Members, record: dict[Any, Any]) -> Invalid | None:
    get = record.get
    for name, required, where, check in members:
        value = get(name, _MISSING)
        if value is _MISSING:
            if required:
                return Invalid("missing_field", f"{where} is required")
            continue
        bad = check(value)
        if bad is not None:
            return bad
    return None


def _compile(rt: RecordType) -> Callable[[dict[Any, Any]], Invalid | None]:
    """The record type's check: the compiled all-valid test, then the per-field checks."""
    fields = {k: f for k, f in COMMON.items() if k != "type"}
    optional: set[str] = set() if rt.keyed_by_account else {"account"}
    fields.update(rt.required)
    fields.update(rt.optional)
    optional.update(rt.optional)
    members = _members(rt.type + ": ", fields, frozenset(optional))

    def refuse(record: dict[Any, Any]) -> Invalid | None:
        return _check_members(members, record)

    checks = {name: check for name, _, _, check in members}
    return compile_valid(fields, frozenset(optional), checks, refuse)


_CHECKERS: Final = {name: _compile(rt) for name, rt in RECORDS.items()}


def decode(
    raw: bytes | None,
    allowed_types: frozenset[str] | None = None,
    max_bytes: int = MAX_RECORD_BYTES,
) -> dict[str, Any] | Invalid:
    """Parse and check one record value.

    Returns the record as a dict, or :class:`Invalid` naming the first problem found.
    ``allowed_types`` (the input types of the source topic) narrows the accepted types.
    Extra fields are kept and not checked.
    """
    if not raw:
        return Invalid("empty_record", f"record {'has no value' if raw is None else 'is empty'}")
    if len(raw) > max_bytes:
        return Invalid("record_too_large", f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _unparsable(raw, exc)
    if type(record) is not dict:
        return Invalid("not_an_object", f"record must be a JSON object, got {_json_type(record)}")
    rtype = record.get("type", _MISSING)
    if rtype is _MISSING:
        return Invalid("missing_field", "type is required")
    check = _CHECKERS.get(rtype) if type(rtype) is str else None
    if check is None:
        return Invalid("unknown_type", f"unknown record type {_shown(rtype)}")
    if allowed_types is not None and rtype not in allowed_types:
        accepted = ", ".join(sorted(allowed_types))
        return Invalid(
            "wrong_topic", f"type {rtype!r} does not travel on this topic (accepted: {accepted})"
        )
    bad = check(record)
    return record if bad is None else bad


def _unparsable(raw: bytes, exc: orjson.JSONDecodeError) -> Invalid:
    """Why orjson refused ``raw``, told apart only now: the hot path never pays for it."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Invalid(
            "invalid_utf8",
            f"record is not valid UTF-8: byte 0x{raw[bad.start]:02x} at offset {bad.start} "
            f"({bad.reason})",
        )
    if raw.startswith(_BOM):
        return Invalid("malformed_json", "record starts with a UTF-8 byte order mark")
    # orjson words it "recursion depth exceeded" before 3.12 and "depth limit exceeded" since.
    if "depth" in str(exc):
        return too_deep()
    return Invalid("malformed_json", f"record is not valid JSON: {exc}")


def too_deep() -> Invalid:
    """The refusal of a record nested deeper than :data:`MAX_DEPTH` levels."""
    return Invalid("too_deeply_nested", f"record is nested more than {MAX_DEPTH} levels deep")
