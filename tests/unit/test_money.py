"""Money helpers: exact decimal parsing, fixed formatting, integer ceiling division."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.money import MICROS_PER_UNIT, ceil_div, format_micros, parse_money


def test_micros_per_unit() -> None:
    assert MICROS_PER_UNIT == 1_000_000


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.60", 600_000),
        ("-1.5", -1_500_000),
        ("0", 0),
        ("-0", 0),
        ("1", 1_000_000),
        ("0.000001", 1),
        ("-0.000001", -1),
        ("123.456789", 123_456_789),
        ("+2.5", 2_500_000),
        ("  0.60\n", 600_000),
        ("007.5", 7_500_000),
        ("0.0079", 7_900),
        ("0.0025", 2_500),
        ("10000000000", 10_000_000_000_000_000),
    ],
)
def test_parse_money(text: str, micros: int) -> None:
    assert parse_money(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "0.0000001",  # seven decimals: below one micro-unit
        "1.0000000",
        "",
        " ",
        "abc",
        "1.",
        ".5",
        "1,5",
        "1_000",
        "--1",
        "+-1",
        "0x10",
        "1e3",
        "NaN",
        "inf",
        "1.2.3",
        "$1.00",
        "1 000",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() accepts it, money must not
        "9" * 100,
    ],
)
def test_parse_money_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money(text)


@pytest.mark.parametrize("value", [0.6, 1, 0, True, False, None, Decimal("0.60"), b"0.60"])
def test_parse_money_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="decimal string"):
        parse_money(value)  # type: ignore[arg-type]


def test_parse_money_float_message_says_why() -> None:
    with pytest.raises(ValueError, match="float"):
        parse_money(0.6)  # type: ignore[arg-type]


def test_parse_money_too_many_decimals_message() -> None:
    with pytest.raises(ValueError, match="6 decimal places"):
        parse_money("0.1234567")


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1_234_567, "1.234567"),
        (-600_000, "-0.600000"),
        (0, "0.000000"),
        (1, "0.000001"),
        (-1, "-0.000001"),
        (1_000_000, "1.000000"),
        (7_900, "0.007900"),
        (123_456_789_012, "123456.789012"),
    ],
)
def test_format_micros(micros: int, text: str) -> None:
    assert format_micros(micros) == text


@pytest.mark.parametrize("value", [0.6, True, "1", None])
def test_format_micros_rejects_non_ints(value: object) -> None:
    with pytest.raises(ValueError):
        format_micros(value)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_format_then_parse_round_trips(micros: int) -> None:
    assert parse_money(format_micros(micros)) == micros


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0, 1, 0),
        (0, 60, 0),
        (1, 1, 1),
        (1, 60, 1),
        (59, 60, 1),
        (60, 60, 1),
        (61, 60, 2),
        (120, 60, 2),
        (121, 60, 3),
        (7, 2, 4),
        (1001, 1000, 2),
        (10**30 + 1, 10**30, 2),
    ],
)
def test_ceil_div(a: int, b: int, expected: int) -> None:
    assert ceil_div(a, b) == expected


@pytest.mark.parametrize(("a", "b"), [(-1, 2), (1, 0), (1, -1), (1.0, 2), (True, 1), (1, True)])
def test_ceil_div_rejects(a: object, b: object) -> None:
    with pytest.raises(ValueError):
        ceil_div(a, b)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**20), st.integers(min_value=1, max_value=10**9))
def test_ceil_div_is_the_smallest_cover(a: int, b: int) -> None:
    q = ceil_div(a, b)
    assert type(q) is int
    assert q * b >= a
    assert (q - 1) * b < a or q == 0
