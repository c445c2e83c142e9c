"""One straight-line function per record type that tells a valid record at a glance.

The per-field checks of :mod:`charger.events.validate` cost a call each; most records are
valid, so for each type a function testing every field inline is generated once, at
import. It only answers "valid or not": on the first failed test it hands the record to
the per-field checks, which find the same field (the tests run in the same order and each
accepts exactly what its check accepts) and say what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from charger.events.timefmt import MILLIS, SECONDS, is_time
from charger_topics.records import Field

Refusal = Callable[[dict[Any, Any]], Any]


def _accepts(kind: str, f: Field, v: str, consts: dict[str, object]) -> str:
    """A Python expression true exactly when the field's check accepts the value ``v``."""
    if kind == "string":
        return f"type({v}) is str and 0 < len({v}) <= {f.max_length!r}"
    if kind == "time":
        # The cached form of is_time: a known second and a valid ".mmmZ" tail.
        return (
            f"type({v}) is str and (len({v}) == 24 and {v}[19:] in MILLIS "
            f"and {v}[:19] in SECONDS or is_time({v}))"
        )
    if kind == "integer":
        test = f"type({v}) is int"
        if f.minimum is not None:
            test += f" and {v} >= {f.minimum!r}"
        if f.maximum is not None:
            test += f" and {v} <= {f.maximum!r}"
        return test
    if kind == "enum":
        name = f"enum_{len(consts)}"
        consts[name] = frozenset(f.values)
        return f"type({v}) is str and {v} in {name}"
    if kind == "boolean":
        return f"type({v}) is bool"
    raise ValueError(kind)


def compile_valid(
    fields: dict[str, Field],
    optional: frozenset[str],
    checks: Mapping[str, Callable[[object], object]],
    refuse: Refusal,
) -> Callable[[dict[Any, Any]], Any]:
    """A function returning None for a valid record, else ``refuse(record)``.

    ``checks`` are the per-field checks by name; fields of other kinds (objects) are
    tested with them.
    """
    consts: dict[str, object] = {}
    lines = ["def valid(r):", "    get = r.get"]
    for n, (name, f) in enumerate(fields.items()):
        v = f"v{n}"
        lines.append(f"    {v} = get({name!r}, MISSING)")
        if f.kind in ("string", "time", "integer", "enum", "boolean"):
            ok = _accepts(f.kind, f, v, consts)
        else:
            consts[f"check_{n}"] = checks[name]
            ok = f"check_{n}({v}) is None"
        if name in optional:
            lines.append(f"    if {v} is not MISSING and not ({ok}):")
        else:
            lines.append(f"    if {v} is MISSING or not ({ok}):")
        lines.append("        return refuse(r)")
    lines.append("    return None")
    namespace: dict[str, Any] = {
        **consts,
        "MISSING": MISSING,
        "MILLIS": MILLIS,
        "SECONDS": SECONDS,
        "is_time": is_time,
        "refuse": refuse,
    }
    exec("\n".join(lines), namespace)  # the source is built above from the contract
    fn: Callable[[dict[Any, Any]], Any] = namespace["valid"]
    return fn


MISSING = object()
