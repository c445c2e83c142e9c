"""Acceptance 5: the billing page in headless Chromium — open it for one account, set a
date range and "debits only", read back the expected rows and the balance; a screenshot is
kept (test-artifacts/billing-page.png, and the test's tmp dir).

The stack: accounts in a real Valkey, written by the worker's own code; the ledger in a
real PostgreSQL, stored as `charger ledger-sink` stores it and read by the API's
PostgreSQL statement reader. `billing_stack` is the one place that builds it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from charger.protocol.keys import Keys
from charger.statements.model import StatementEntry
from tests.kit import records as r
from tests.kit.api import (
    PARTITIONS,
    TOKEN,
    Accounts,
    api_in_thread,
    store_ledger,
    valkey_url,
)
from tests.kit.browser import ARTIFACTS, chromium
from tests.kit.cluster import redis_for
from tests.kit.statements import ledger

ZONE = ZoneInfo("America/New_York")
PREFIX = "page"
ACCOUNT = "acme-1"


@dataclass
class BillingStack:
    url: str
    entries: list[StatementEntry]
    today: Any  # the account's local date when the stack was built


def local_noon(day: Any) -> datetime:
    return datetime.combine(day, time(12), tzinfo=ZONE).astimezone(UTC)


async def seed(redis_url: str, now: datetime) -> None:
    redis = redis_for(redis_url)
    t0 = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        await Accounts(redis, Keys(PREFIX, PARTITIONS)).apply(
            [
                r.account_upserted(
                    t0,
                    ACCOUNT,
                    "u1",
                    time_zone="America/New_York",
                    auto_recharge={
                        "enabled": True,
                        "threshold_micros": 10_000_000,
                        "amount_micros": 60_000_000,
                    },
                    notify_email="ap@acme.example",
                ),
                r.balance_credited(t0, ACCOUNT, "t1", amount_micros=50_000_000),
                r.sms_sent(t0, ACCOUNT, "s1"),
                r.sms_sent(t0, ACCOUNT, "s2"),
            ]
        )
    finally:
        await redis.aclose()


@pytest.fixture
def billing_stack(database: str) -> Iterator[BillingStack]:
    """Valkey with the account, PostgreSQL with its ledger, the API over HTTP."""
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    day = [today - timedelta(days=n) for n in range(6)]  # day[n]: n days ago, local
    # The statement mirrors what moved the Redis balance, over the last five local days.
    moves = [
        (local_noon(day[5]), "topup", 50_000_000),
        (local_noon(day[4]), "sms_out", -7_900),
        (local_noon(day[3]), "fee", -2_000_000),
        (local_noon(day[3]) + timedelta(hours=1), "topup", 2_000_000),
        (local_noon(day[2]), "sms_out", -7_900),
        (local_noon(day[1]), "call", -600_000),
        (local_noon(day[1]) + timedelta(hours=2), "topup", 600_000),
    ]
    entries = ledger(ACCOUNT, 0, moves)
    with valkey_url() as redis_url:
        asyncio.run(seed(redis_url, now))
        asyncio.run(store_ledger(database, entries))
        with api_in_thread(redis_url, PREFIX, database) as url:
            yield BillingStack(url, entries, today)


def test_the_billing_page_shows_the_debits_of_a_date_range(
    billing_stack: BillingStack, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    stack = billing_stack
    first, last = stack.today - timedelta(days=4), stack.today - timedelta(days=2)
    expected = [
        e
        for e in stack.entries
        if e.amount_micros < 0 and first <= e.occurred_at.astimezone(ZONE).date() <= last
    ]
    assert [e.kind for e in expected] == ["sms_out", "fee", "sms_out"]

    with chromium(tmp_path / "profile") as driver:
        wait = WebDriverWait(driver, 20)
        table_ready = (By.CSS_SELECTOR, "#statement-rows[data-state='ready']")
        driver.get(f"{stack.url}/billing/#account={ACCOUNT}&token={TOKEN}")
        wait.until(ready.presence_of_element_located(table_ready))
        # The token left the address bar as soon as the page read it.
        assert "token" not in driver.current_url
        assert driver.find_element(By.ID, "balance").text == "$49.9842"
        assert driver.find_element(By.ID, "status").text == "active"
        assert not driver.find_element(By.ID, "sign-in").is_displayed()
        assert driver.find_element(By.ID, "recharge-amount").text == "$60.00"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#voice-rates tbody tr"))
        # All activity of the default range (the last 30 days): every entry.
        rows = driver.find_elements(By.CSS_SELECTOR, "#statement-rows tbody tr")
        assert len(rows) == len(stack.entries)

        for field, value in (("from", first.isoformat()), ("to", last.isoformat())):
            element = driver.find_element(By.ID, field)
            driver.execute_script("arguments[0].value = arguments[1]", element, value)
        Select(driver.find_element(By.ID, "show")).select_by_value("debits")
        driver.find_element(By.ID, "apply").click()
        wait.until(
            lambda d: (
                d.find_element(By.ID, "statement-rows").get_attribute("data-state") == "ready"
                and len(d.find_elements(By.CSS_SELECTOR, "#statement-rows tbody tr"))
                == len(expected)
            )
        )
        rows = driver.find_elements(By.CSS_SELECTOR, "#statement-rows tbody tr")
        assert [row.get_attribute("data-entry-id") for row in rows] == [
            e.entry_id for e in expected
        ]
        amounts = [row.find_element(By.CSS_SELECTOR, ".amount").text for row in rows]
        assert amounts == ["-$0.0079", "-$2.00", "-$0.0079"]
        after = [row.find_element(By.CSS_SELECTOR, ".balance-after").text for row in rows]
        assert after == ["$49.9921", "$47.9921", "$49.9842"]
        dates = [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows]
        assert dates == [e.occurred_at.astimezone(ZONE).date().isoformat() for e in expected]

        shot = tmp_path / "billing-page.png"
        assert driver.save_screenshot(str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "billing-page.png")
    assert shot.stat().st_size > 10_000
