"""Rate plan documents: turn a parsed YAML/JSON mapping into a :class:`RatePlan`.

The document format is described in ``docs/rate-plans.md``; reading files is
:mod:`charger.rating.loader`. Money is a quoted decimal
string (``per_minute: "0.60"``) or an integer in micro-units under the same name with a
``_micros`` suffix (``per_minute_micros: 600000``). Bare numbers are refused: a YAML or
JSON float cannot hold ``0.60`` exactly, and a bare integer would leave the unit to guesswork.
Unknown keys are refused too, so a misspelt field fails loudly instead of defaulting to free.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from charger.money import parse_money
from charger.rating.model import (
    DIRECTIONS,
    MAX_PRICE_MICROS,
    Increments,
    RatePlan,
    VoiceRate,
    check_currency,
    check_effective_from,
    check_plan_id,
)

# The value types are re-exported so callers can take everything plan-related from here.
__all__ = ["DIRECTIONS", "Increments", "PlanError", "RatePlan", "VoiceRate", "plan_from_dict"]

_PLAN_KEYS = frozenset(
    {
        "id",
        "currency",
        "description",
        "voice",
        "sms",
        "ring_through_attempt",
        "ring_through_attempt_micros",
        "version",
        "effective_from",
    }
)
_VOICE_KEYS = frozenset(
    {
        "prefix",
        "direction",
        "per_minute",
        "per_minute_micros",
        "connect_fee",
        "connect_fee_micros",
        "increments",
        "description",
    }
)
_SMS_KEYS = frozenset(
    {
        "outbound_per_segment",
        "outbound_per_segment_micros",
        "inbound_per_segment",
        "inbound_per_segment_micros",
    }
)
_DEFAULT_INCREMENTS = "60/60"


class PlanError(ValueError):
    """A rate plan document is invalid. The message names the plan and the field."""

    def __init__(
        self, plan_id: str | None, field: str | None, problem: str, *, source: str | None = None
    ) -> None:
        self.plan_id = plan_id
        self.field = field
        self.problem = problem
        self.source = source
        plan = f"plan {plan_id!r}" if plan_id else "plan (no id)"
        where = f"{plan}: {field}" if field else plan
        super().__init__(f"{source}: {where}: {problem}" if source else f"{where}: {problem}")

    def __reduce__(self) -> tuple[Callable[..., PlanError], tuple[str | None, ...]]:
        # Rebuild from the parts, not the rendered message, when crossing a process boundary.
        rebuild = functools.partial(type(self), source=self.source)
        return (rebuild, (self.plan_id, self.field, self.problem))

    def with_source(self, source: str, plan_label: str | None = None) -> PlanError:
        """The same error, located in ``source`` (and labelled if the plan has no id)."""
        return PlanError(self.plan_id or plan_label, self.field, self.problem, source=source)


def _check_keys(
    plan_id: str | None, where: str | None, doc: Mapping[str, object], allowed: frozenset[str]
) -> None:
    unknown = sorted(repr(key) for key in doc if key not in allowed)
    if unknown:
        raise PlanError(
            plan_id, where, f"unknown field(s) {', '.join(unknown)}; allowed: {sorted(allowed)}"
        )


def _money(
    plan_id: str, where: str, doc: Mapping[str, object], name: str, default: int | None
) -> int:
    """Read money field ``name`` (decimal string) or ``name_micros`` (int) from ``doc``."""
    micros_name = f"{name}_micros"
    field = f"{where}.{name}" if where else name
    if name in doc and micros_name in doc:
        raise PlanError(plan_id, field, f"give either {name} or {micros_name}, not both")
    if micros_name in doc:
        value = doc[micros_name]
        field = f"{where}.{micros_name}" if where else micros_name
        if isinstance(value, bool) or not isinstance(value, int):
            raise PlanError(plan_id, field, f"must be an integer, got {value!r}")
        amount = value
    elif name in doc:
        value = doc[name]
        if isinstance(value, float):
            raise PlanError(
                plan_id,
                field,
                f"{value!r} is a float and cannot hold money exactly; quote it as a decimal "
                f'string ("{value}") or give {micros_name} as an integer',
            )
        if isinstance(value, bool) or not isinstance(value, str):
            raise PlanError(
                plan_id,
                field,
                f'must be a quoted decimal string like "0.60" (or use {micros_name}), '
                f"got {value!r}",
            )
        try:
            amount = parse_money(value)
        except ValueError as exc:
            raise PlanError(plan_id, field, str(exc)) from None
    elif default is not None:
        return default
    else:
        raise PlanError(plan_id, field, f"missing (give {name} or {micros_name})")
    if amount < 0:
        raise PlanError(plan_id, field, f"must not be negative, got {amount} micros")
    if amount > MAX_PRICE_MICROS:
        raise PlanError(
            plan_id, field, f"must be at most {MAX_PRICE_MICROS} micros, got {amount} micros"
        )
    return amount


def _voice_rate(plan_id: str, position: int, doc: object) -> VoiceRate:
    where = f"voice[{position}]"
    if not isinstance(doc, Mapping):
        raise PlanError(plan_id, where, f"must be a mapping, got {doc!r}")
    _check_keys(plan_id, where, doc, _VOICE_KEYS)
    prefix = doc.get("prefix")
    if not isinstance(prefix, str) or not (prefix == "" or (prefix.isascii() and prefix.isdigit())):
        # An unquoted YAML 0044 is read as a number, dropping the zeros: insist on quotes.
        raise PlanError(
            plan_id, f"{where}.prefix", f'must be a quoted string of digits or "", got {prefix!r}'
        )
    direction = doc.get("direction")
    if direction not in DIRECTIONS:
        raise PlanError(
            plan_id, f"{where}.direction", f"must be one of {sorted(DIRECTIONS)}, got {direction!r}"
        )
    increments_text = doc.get("increments", _DEFAULT_INCREMENTS)
    try:
        increments = Increments.parse(increments_text)
    except ValueError as exc:
        raise PlanError(plan_id, f"{where}.increments", str(exc)) from None
    return VoiceRate(
        prefix=prefix,
        direction=str(direction),
        per_minute_micros=_money(plan_id, where, doc, "per_minute", None),
        connect_fee_micros=_money(plan_id, where, doc, "connect_fee", 0),
        increments=increments,
    )


def _version(plan_id: str, doc: Mapping[str, object]) -> tuple[int, str | None]:
    """``version`` (absent: 0, a plan without versions) and ``effective_from`` (absent: None)."""
    version: object = doc.get("version", 0)
    if "version" in doc and (
        isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31
    ):
        raise PlanError(
            plan_id, "version", f"must be an integer from 1 to 2**31-1, got {version!r}"
        )
    try:
        start = check_effective_from(doc.get("effective_from"))
    except ValueError as exc:
        raise PlanError(plan_id, "effective_from", str(exc)) from None
    assert isinstance(version, int)
    return version, start


def plan_from_dict(doc: Mapping[str, object]) -> RatePlan:
    """Build a :class:`RatePlan` from a parsed document; raise :class:`PlanError` if invalid."""
    if not isinstance(doc, Mapping):
        raise PlanError(None, None, f"a plan must be a mapping, got {type(doc).__name__}")
    raw_id = doc.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        raise PlanError(None, "id", f"missing or not a non-empty string: {raw_id!r}")
    try:
        plan_id = check_plan_id(raw_id)
    except ValueError as exc:
        raise PlanError(raw_id, "id", str(exc)) from None
    _check_keys(plan_id, None, doc, _PLAN_KEYS)
    if "currency" not in doc:
        raise PlanError(plan_id, "currency", "missing")
    try:
        currency = check_currency(doc["currency"])
    except ValueError as exc:
        raise PlanError(plan_id, "currency", str(exc)) from None
    if "voice" not in doc:
        raise PlanError(plan_id, "voice", "missing (use [] for a plan without calls)")
    voice_doc = doc["voice"]
    if not isinstance(voice_doc, list):
        raise PlanError(plan_id, "voice", f"must be a list of rates, got {voice_doc!r}")
    voice: list[VoiceRate] = []
    seen: dict[tuple[str, str], int] = {}
    for position, item in enumerate(voice_doc):
        rate = _voice_rate(plan_id, position, item)
        key = (rate.direction, rate.prefix)
        if key in seen:
            # Two prices for the same numbers: whichever won would be arbitrary.
            raise PlanError(
                plan_id,
                f"voice[{position}]",
                f"duplicate {rate.direction} rate for prefix {rate.prefix!r} "
                f"(already in voice[{seen[key]}])",
            )
        seen[key] = position
        voice.append(rate)
    sms = doc.get("sms", {})
    if not isinstance(sms, Mapping):
        raise PlanError(plan_id, "sms", f"must be a mapping, got {sms!r}")
    _check_keys(plan_id, "sms", sms, _SMS_KEYS)
    version, effective_from = _version(plan_id, doc)
    return RatePlan(
        id=plan_id,
        currency=currency,
        voice=tuple(voice),
        sms_out_micros=_money(plan_id, "sms", sms, "outbound_per_segment", 0),
        sms_in_micros=_money(plan_id, "sms", sms, "inbound_per_segment", 0),
        ring_through_micros=_money(plan_id, "", doc, "ring_through_attempt", 0),
        version=version,
        effective_from=effective_from,
    )
