"""Rate plan value types: increments, voice rates, and the plan with its prefix index.

These are plain immutable values that check their own invariants, so a plan that exists is a
plan that can be rated. Turning documents into plans lives in :mod:`charger.rating.plans`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from charger.events.timefmt import is_time

__all__ = [
    "DIRECTIONS",
    "MAX_INCREMENT_S",
    "MAX_PRICE_MICROS",
    "Increments",
    "RatePlan",
    "VoiceRate",
    "check_currency",
    "check_effective_from",
    "check_plan_id",
]

DIRECTIONS: Final = frozenset({"outbound", "inbound", "forwarded"})
# The highest price a plan may state: 10,000 currency units a minute, a text or an attempt.
# Far above any real tariff, and low enough that a week-long call's cost stays exact in the
# doubles apply.lua computes holds with (10**10 * 604_800 < 2**53).
MAX_PRICE_MICROS: Final = 10**10
# A billing increment longer than an hour is a typo (60/6 written 60/600000).
MAX_INCREMENT_S: Final = 3600

_INCREMENTS = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
_PREFIX = re.compile(r"[0-9]*")
_CURRENCY = re.compile(r"[A-Z]{3}")
# Plan ids end up in keys and ledger records; keep them short and free of separators/spaces.
_PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_plan_id(value: object) -> str:
    """Return ``value`` if it is a valid plan id, else raise :class:`ValueError`."""
    if not isinstance(value, str) or _PLAN_ID.fullmatch(value) is None:
        raise ValueError(
            "must be 1-128 characters of letters, digits, '.', '_', ':' or '-' "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


def check_currency(value: object) -> str:
    """Return ``value`` if it is three uppercase letters (ISO 4217 style), else raise."""
    if not isinstance(value, str) or _CURRENCY.fullmatch(value) is None:
        raise ValueError(f"must be 3 uppercase letters like 'USD', got {value!r}")
    return value


def check_effective_from(value: object) -> str | None:
    """Return ``value`` if it is None or a contract time (``2026-12-01T00:00:00.000Z``).

    One fixed format, the events' own, so that comparing the strings compares the instants.
    """
    if value is None or (isinstance(value, str) and is_time(value)):
        return value
    raise ValueError(
        f"must be RFC 3339 UTC with milliseconds like '2026-12-01T00:00:00.000Z', got {value!r}"
    )


def _require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    # bool is an int subclass; True as a price or increment is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


@dataclass(frozen=True, slots=True)
class Increments:
    """Billing increments in seconds: the first ``first`` seconds are billed as one block,
    then every started ``next`` seconds. Written ``"first/next"``, e.g. ``"60/6"``."""

    first: int
    next: int

    def __post_init__(self) -> None:
        _require_int("increments.first", self.first, 1, MAX_INCREMENT_S)
        _require_int("increments.next", self.next, 1, MAX_INCREMENT_S)

    @classmethod
    def parse(cls, text: str) -> Increments:
        """Parse ``"60/6"``; raise :class:`ValueError` on anything else."""
        if not isinstance(text, str):
            raise ValueError(f"increments must be a string like '60/6', got {text!r}")
        match = _INCREMENTS.fullmatch(text)
        if match is None:
            raise ValueError(f"increments must look like '60/6', got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.first}/{self.next}"


@dataclass(frozen=True, slots=True)
class VoiceRate:
    """The price of calls in one direction to numbers starting with ``prefix``.

    ``prefix`` is digits only; ``""`` matches every number (the catch-all).
    """

    prefix: str
    direction: str
    per_minute_micros: int
    connect_fee_micros: int
    increments: Increments

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or _PREFIX.fullmatch(self.prefix) is None:
            raise ValueError(f"prefix must be a string of digits (or ''), got {self.prefix!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction must be one of {sorted(DIRECTIONS)}, got {self.direction!r}"
            )
        _require_int("per_minute_micros", self.per_minute_micros, 0, MAX_PRICE_MICROS)
        _require_int("connect_fee_micros", self.connect_fee_micros, 0, MAX_PRICE_MICROS)
        if not isinstance(self.increments, Increments):
            raise ValueError(f"increments must be Increments, got {self.increments!r}")

    @property
    def zero_rated(self) -> bool:
        """True when calls at this rate cost nothing at all."""
        return self.per_minute_micros == 0 and self.connect_fee_micros == 0


@dataclass(frozen=True, slots=True)
class RatePlan:
    """A named set of prices in one currency: voice rates by direction and prefix, SMS per
    segment, and a fee per ring-through attempt. All amounts are micro-units.

    ``version`` tells versions of one plan id apart (0: a plan without versions) and
    ``effective_from`` is the contract time the version starts to apply (None: always).
    """

    id: str
    currency: str
    voice: tuple[VoiceRate, ...]
    sms_out_micros: int
    sms_in_micros: int
    ring_through_micros: int
    version: int = 0
    effective_from: str | None = None
    # direction -> prefix -> rate, built once so lookups cost one dict probe per prefix length.
    _index: dict[str, dict[str, VoiceRate]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _longest: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name, check in (("id", check_plan_id), ("currency", check_currency)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name} {exc}") from None
        if not isinstance(self.voice, tuple):
            raise ValueError(f"voice must be a tuple of VoiceRate, got {type(self.voice).__name__}")
        _require_int("sms_out_micros", self.sms_out_micros, 0, MAX_PRICE_MICROS)
        _require_int("sms_in_micros", self.sms_in_micros, 0, MAX_PRICE_MICROS)
        _require_int("ring_through_micros", self.ring_through_micros, 0, MAX_PRICE_MICROS)
        _require_int("version", self.version, 0)
        try:
            check_effective_from(self.effective_from)
        except ValueError as exc:
            raise ValueError(f"effective_from {exc}") from None
        index: dict[str, dict[str, VoiceRate]] = {d: {} for d in DIRECTIONS}
        for position, rate in enumerate(self.voice):
            if not isinstance(rate, VoiceRate):
                raise ValueError(f"voice[{position}] must be a VoiceRate, got {rate!r}")
            by_prefix = index[rate.direction]
            if rate.prefix in by_prefix:
                # Two prices for the same numbers: whichever won would be arbitrary.
                raise ValueError(
                    f"voice[{position}]: duplicate {rate.direction} rate for prefix {rate.prefix!r}"
                )
            by_prefix[rate.prefix] = rate
        longest = {d: max(map(len, rates), default=0) for d, rates in index.items()}
        # Frozen dataclass: the derived index is set once here and never changes after.
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_longest", longest)

    def at(self, time: str) -> RatePlan | None:
        """This plan if it is in force at contract time ``time``, else None.

        A plan on its own is its only version (see :class:`charger.rating.versions.PlanVersions`).
        """
        start = self.effective_from
        return self if start is None or start <= time else None

    def voice_rate(self, direction: str, number: str) -> VoiceRate | None:
        """The rate for a call in ``direction`` to ``number``, or None if nothing matches.

        The longest matching prefix wins. Only the digits of ``number`` count, so
        ``"+1 (415) 555-0100"`` is looked up as ``"14155550100"``.
        """
        by_prefix = self._index.get(direction)
        if by_prefix is None:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
        tail = number[1:] if number[:1] == "+" else number
        if tail.isascii() and tail.isdigit():  # the common "+<digits>" form, without a scan
            digits = tail
        else:
            digits = "".join(ch for ch in number if "0" <= ch <= "9")
        for length in range(min(len(digits), self._longest[direction]), -1, -1):
            rate = by_prefix.get(digits[:length])
            if rate is not None:
                return rate
        return None
