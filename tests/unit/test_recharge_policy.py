"""The auto-recharge policy per currency, and its rule worded as the billing pages word it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from charger.charging.accounts import check_settings
from charger.charging.records import CurrencyPolicy, RechargePolicy
from charger.charging.usage import RatingError
from charger.settings import Settings

POLICY = RechargePolicy(10_000_000, 50_000_000, {"UAH": CurrencyPolicy(400_000_000, 2_000_000_000)})


def upsert(currency: str, threshold: int, amount: int) -> dict[str, Any]:
    auto = {"enabled": True, "threshold_micros": threshold, "amount_micros": amount}
    return {"account": "a1", "currency": currency, "auto_recharge": auto}


@pytest.mark.parametrize(
    ("currency", "threshold", "amount", "says"),
    [
        ("USD", 10_000_000, 50_000_001, None),
        ("USD", 10_000_000, 50_000_000, "the minimum amount must be greater than 50.00 USD"),
        ("USD", 9_999_999, 60_000_000, "the minimum threshold is 10.00 USD"),
        ("EUR", 10_000_000, 60_000_000, None),  # no rule of its own: the default
        ("UAH", 400_000_000, 2_000_500_000, None),
        ("UAH", 10_000_000, 60_000_000, "the minimum threshold is 400.00 UAH"),
        ("UAH", 400_000_000, 2_000_000_000, "greater than 2000.00 UAH, amount_micros is 2000.00"),
        ("USD", 80_000_000, 70_000_000, "must be above threshold_micros"),
    ],
)
def test_each_currency_has_its_rule(
    currency: str, threshold: int, amount: int, says: str | None
) -> None:
    body = upsert(currency, threshold, amount)
    if says is None:
        check_settings(body, None, POLICY)
        return
    with pytest.raises(RatingError, match=says) as refused:
        check_settings(body, None, POLICY)
    assert refused.value.reason == "invalid_auto_recharge"


def test_the_settings_read_the_policies_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "CHARGER_RECHARGE_POLICIES",
        '{"UAH": {"min_threshold_micros": 400000000, "min_amount_micros": 2000000000}}',
    )
    policy = Settings().recharge_policy()
    assert policy.of("UAH") == CurrencyPolicy(400_000_000, 2_000_000_000)
    assert policy.of("USD") == CurrencyPolicy(10_000_000, 50_000_000)


@pytest.mark.parametrize(
    "policies",
    [
        {"usd": {"min_threshold_micros": 1, "min_amount_micros": 2}},
        {"USD": {"min_threshold_micros": 1}},
    ],
)
def test_a_policy_that_cannot_be_read_is_refused(policies: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="CHARGER_RECHARGE_POLICIES"):
        Settings(recharge_policies=policies)
