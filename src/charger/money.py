"""Money as integers: one currency unit is ``MICROS_PER_UNIT`` micro-units.

No float ever holds an amount. Amounts enter the system either as integers already in
micro-units or as decimal strings such as ``"0.60"``, which :func:`parse_money` converts
exactly. :func:`format_micros` is the inverse, for logs and humans.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MICROS_PER_UNIT", "MONEY_DECIMALS", "ceil_div", "format_micros", "parse_money"]

MONEY_DECIMALS: Final = 6
MICROS_PER_UNIT: Final = 1_000_000  # 10 ** MONEY_DECIMALS

# ASCII digits only: ``\d`` would also accept other scripts' digits, which int() happily reads.
_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")
# Far beyond any real price, short enough that a garbage string cannot cost much to parse.
_MAX_TEXT = 40


def parse_money(value: str) -> int:
    """Convert a decimal string such as ``"0.60"`` or ``"-1.5"`` to micro-units.

    Accepted: an optional sign, at least one digit, and optionally a dot followed by one to
    six digits. Surrounding whitespace is ignored. Anything else, including floats, ints,
    bools, exponents (``"1e3"``), digit separators and more than six decimals, raises
    :class:`ValueError`; the caller never gets a silently rounded amount.
    """
    # bool is checked separately only for the message: isinstance(True, str) is False anyway.
    if isinstance(value, bool) or not isinstance(value, str):
        kind = type(value).__name__
        raise ValueError(
            f"money must be a decimal string like '0.60', got {kind} {value!r}"
            + (" (floats cannot hold money exactly)" if isinstance(value, float) else "")
        )
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"money string is too long: {value[:_MAX_TEXT]!r}...")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not a decimal amount: {value!r} (expected e.g. '0.60' or '-1.5')")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if len(fraction) > MONEY_DECIMALS:
        raise ValueError(
            f"money has at most {MONEY_DECIMALS} decimal places (one micro-unit), got {value!r}"
        )
    micros = int(whole) * MICROS_PER_UNIT + int(fraction.ljust(MONEY_DECIMALS, "0"))
    return -micros if sign == "-" else micros


def format_micros(micros: int) -> str:
    """Render micro-units as a decimal string with exactly six decimals.

    ``1_234_567 -> "1.234567"``, ``-600_000 -> "-0.600000"``, ``0 -> "0.000000"``. A fixed
    width keeps columns aligned in logs and every output parses back with :func:`parse_money`.
    """
    if isinstance(micros, bool) or not isinstance(micros, int):
        raise ValueError(f"micros must be an int, got {type(micros).__name__} {micros!r}")
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{fraction:0{MONEY_DECIMALS}d}"


def ceil_div(a: int, b: int) -> int:
    """Return ``ceil(a / b)`` for ``a >= 0`` and ``b >= 1``, in exact integer arithmetic."""
    if type(a) is int and type(b) is int and a >= 0 and b >= 1:  # the rating hot path
        return -(-a // b)
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not isinstance(a, int)
        or not isinstance(b, int)
    ):
        raise ValueError(f"ceil_div takes ints, got {a!r} and {b!r}")
    if a < 0:
        raise ValueError(f"ceil_div dividend must be >= 0, got {a}")
    if b < 1:
        raise ValueError(f"ceil_div divisor must be >= 1, got {b}")
    # Floor division of the negation rounds toward minus infinity, i.e. ceil of the original.
    return -(-a // b)
