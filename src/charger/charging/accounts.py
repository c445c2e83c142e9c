"""What an ``account.upserted`` may set, beyond the shape the decoder checks. Pure.

The decoder knows the contract's types and bounds; these checks need more: the code list
of currencies (a lowercase ``usd`` would never match a plan and every call would be refused
later, far from its cause), the account's current settings (its currency cannot change
under a running balance) and the deployment's auto-recharge policy. A refused upsert leaves
the account's previous settings in force.
"""

from __future__ import annotations

import re
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from charger.charging.records import AccountInfo, RechargePolicy
from charger.charging.usage import RatingError
from charger.money import MICROS_PER_UNIT as MICROS
from charger.rating.model import check_currency

__all__ = ["check_settings", "known_time_zone"]

# One @, something on each side, a dot in the domain, no spaces: enough to catch a field
# filled with a name or a phone number, without pretending to validate RFC 5321.
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def check_settings(body: dict[str, Any], prev: AccountInfo | None, policy: RechargePolicy) -> None:
    """Raise :class:`RatingError` when the upsert in ``body`` must be refused.

    ``prev`` is what the account has now (None for a new account).
    """
    account = body["account"]
    try:
        check_currency(body["currency"])
    except ValueError as exc:
        raise RatingError(
            "invalid_account_settings", f"account {account!r}: currency {exc}"
        ) from None
    email = body.get("notify_email")
    if email is not None and _EMAIL.fullmatch(email) is None:
        raise RatingError(
            "invalid_account_settings",
            f"account {account!r}: notify_email must be an e-mail address, got {email!r}",
        )
    zone = body.get("time_zone")
    if zone is not None and not known_time_zone(zone):
        raise RatingError(
            "invalid_account_settings",
            f"account {account!r}: time_zone {zone!r} is not an IANA time zone name",
        )
    _check_auto_recharge(account, body["currency"], body.get("auto_recharge"), policy)
    if prev is not None and prev.currency != body["currency"]:
        raise RatingError(
            "currency_change",
            f"account {account!r} is in {prev.currency}, cannot move to {body['currency']}",
        )


def known_time_zone(name: str) -> bool:
    """True when ``name`` is a time zone of the IANA database this process has."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False  # zoneinfo would read it as a path
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_auto_recharge(
    account: str, currency: str, ar: dict[str, Any] | None, policy: RechargePolicy
) -> None:
    """Settings the payment side would refuse, or that would recharge in a loop."""
    if not ar or not ar["enabled"]:
        return
    rule = policy.of(currency)
    threshold, amount = ar["threshold_micros"], ar["amount_micros"]
    problem = ""
    if threshold < rule.min_threshold_micros:
        problem = (
            f"the minimum threshold is {_shown(rule.min_threshold_micros, currency)}, "
            f"threshold_micros is {_shown(threshold, currency)}"
        )
    elif amount <= rule.min_amount_micros:
        problem = (
            f"the minimum amount must be greater than {_shown(rule.min_amount_micros, currency)}, "
            f"amount_micros is {_shown(amount, currency)}"
        )
    elif amount <= threshold:
        problem = f"amount_micros {amount} must be above threshold_micros {threshold}"
    if problem:
        raise RatingError("invalid_auto_recharge", f"account {account!r}: {problem}")


def _shown(micros: int, currency: str) -> str:
    """An amount as a person reads it: 50.00 USD (exact: more places when it has them)."""
    units, rest = divmod(micros, MICROS)
    places = f"{rest:06d}".rstrip("0").ljust(2, "0")
    return f"{units}.{places} {currency}"
