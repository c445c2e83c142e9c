"""Subscriptions on the real broker and Redis, the worker's clock driven by hand.

The clock is set to chosen local instants (a month end, a daylight saving change) and the
ticker is run by hand; the records are dated at those instants too. Nothing is compared
with the wall clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from charger.clock import ManualClock
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import entries
from tests.kit.records import account_upserted, balance_credited, subscription_upserted
from tests.kit.waits import until
from tests.kit.worker import running

ACC = names.BILLING_ACCOUNTS
KYIV = ZoneInfo("Europe/Kyiv")
USD = 1_000_000


def kyiv_ms(day: date, hour: int = 0, minute: int = 0) -> int:
    return (
        round(datetime(day.year, day.month, day.day, hour, minute, tzinfo=KYIV).timestamp()) * 1000
    )


def local_day(instant: str) -> date:
    return datetime.fromtimestamp(parse_time_ms(instant) / 1000, KYIV).date()


async def fees_by_day(run: Run, account: str) -> Counter[tuple[str, str]]:
    """(subscription, local day) -> how many fee entries charged it."""
    return Counter(
        (e["subscription_id"], e["period_start"]) for e in await entries(run, account, "fee")
    )


async def test_arrears_in_kyiv_charge_each_local_day_once_across_dst_and_a_month_end(
    run: Run,
) -> None:
    a = run.acct("kyiv")
    first = date(2026, 10, 1)
    opened = format_time_ms(kyiv_ms(date(2026, 10, 23)))
    records = [
        account_upserted(run, a, f"up-{a}", time_zone="Europe/Kyiv", time=opened),
        balance_credited(run, a, f"cr-{a}", amount_micros=1000 * USD, time=opened),
        subscription_upserted(
            run,
            a,
            f"sub1-{a}",
            subscription_id="product",
            price_micros=39 * USD,
            starts_at=format_time_ms(kyiv_ms(first)),
            time=opened,
        ),
        subscription_upserted(
            run,
            a,
            f"sub2-{a}",
            subscription_id="numbers",
            price_micros=5 * USD,
            quantity=3,
            item="number_rental",
            description="Rented numbers",
            starts_at=format_time_ms(kyiv_ms(first)),
            time=opened,
        ),
    ]
    clock = ManualClock(kyiv_ms(date(2026, 10, 23), 12))
    settings = run.settings_with(tick_ms=0)
    async with running(settings, clock) as runtime:
        await run.send_all([(ACC, a, record) for record in records])
        await run.wait_idle(60)
        # Every local day from Oct 24 (DST ends on Oct 25: a 25-hour day) to Nov 2, just
        # after local midnight: the day before is charged, once.
        day = date(2026, 10, 24)
        while day <= date(2026, 11, 2):
            clock.set(kyiv_ms(day, 0, 1))
            await runtime.worker.tick()
            await runtime.worker.tick()  # a second look finds nothing more
            await run.wait_idle(60)
            charged = await fees_by_day(run, a)
            yesterday = (day - timedelta(days=1)).isoformat()
            assert charged[("product", yesterday)] == charged[("numbers", yesterday)] == 1
            assert ("product", day.isoformat()) not in charged
            day += timedelta(days=1)
    # Down for three days; back after local midnight of Nov 5: Nov 2, 3 and 4, once each.
    clock.set(kyiv_ms(date(2026, 11, 5), 0, 1))
    async with running(settings, clock) as runtime:

        async def caught_up() -> bool:
            await runtime.worker.tick()  # as the ticker does, once partitions are assigned
            await run.wait_idle(60)
            return ("numbers", "2026-11-04") in await fees_by_day(run, a)

        await until(caught_up, "the restarted worker charged the days it missed", 90)
        await runtime.worker.tick()
        await run.wait_idle(60)

    fees = await entries(run, a, "fee")
    charged = await fees_by_day(run, a)
    assert set(charged.values()) == {1}
    days = [first + timedelta(days=n) for n in range(35)]  # Oct 1 .. Nov 4
    assert set(charged) == {(s, d.isoformat()) for s in ("product", "numbers") for d in days}
    october = [e for e in fees if e["period_start"].startswith("2026-10")]
    assert sum(-e["amount_micros"] for e in october) == 39 * USD + 3 * 5 * USD
    assert (
        sum(-e["amount_micros"] for e in october if e["subscription_id"] == "numbers") == 15 * USD
    )
    for entry in fees:
        assert local_day(entry["time"]).isoformat() == entry["period_start"] == entry["period_end"]
        assert entry["item"] in ("product", "number_rental") and entry["unit"] == "item"
    assert len({e["id"] for e in fees}) == len(fees)
    assert await run.balance(a) == 1000 * USD + sum(e["amount_micros"] for e in fees)


async def test_licences_in_advance_increase_mid_month_pro_rata(run: Run) -> None:
    a = run.acct("licences")
    utc = ZoneInfo("UTC")

    def at(day: date, hour: int = 0, minute: int = 0) -> int:
        return (
            round(datetime(day.year, day.month, day.day, hour, minute, tzinfo=utc).timestamp())
            * 1000
        )

    starts = format_time_ms(at(date(2026, 4, 1)))
    opened = format_time_ms(at(date(2026, 3, 31), 12))
    licences = dict(
        subscription_id="licences",
        item="licence",
        description="Licences",
        price_micros=64 * USD,
        billing="advance",
        starts_at=starts,
    )
    clock = ManualClock(at(date(2026, 3, 31), 12))
    async with running(run.settings_with(tick_ms=0), clock) as runtime:
        await run.send_all(
            [
                (ACC, a, account_upserted(run, a, f"up-{a}", currency="EUR", time=opened)),
                (
                    ACC,
                    a,
                    balance_credited(run, a, f"cr-{a}", amount_micros=5000 * USD, time=opened),
                ),
                (
                    ACC,
                    a,
                    subscription_upserted(run, a, f"l1-{a}", quantity=10, time=opened, **licences),
                ),
            ]
        )
        await run.wait_idle(60)
        clock.set(at(date(2026, 4, 1), 0, 1))
        await runtime.worker.tick()
        await run.wait_idle(60)
        on_8th = format_time_ms(at(date(2026, 4, 8), 9))
        clock.set(at(date(2026, 4, 8), 9))
        await run.send(
            ACC, a, subscription_upserted(run, a, f"l2-{a}", quantity=17, time=on_8th, **licences)
        )
        await run.wait_idle(60)
        await runtime.worker.tick()
        await run.wait_idle(60)
        clock.set(at(date(2026, 5, 1), 0, 1))
        await runtime.worker.tick()
        await runtime.worker.tick()
        await run.wait_idle(60)

    fees = await entries(run, a, "fee")
    assert [
        (e["period_start"], e["period_end"], e["quantity"], -e["amount_micros"]) for e in fees
    ] == [
        ("2026-04-01", "2026-04-30", 10, 640 * USD),
        # 7 more on April 8: 23 of April's 30 days, rounded down to the micro-unit
        ("2026-04-08", "2026-04-30", 7, 7 * 64 * USD * 23 // 30),
        ("2026-05-01", "2026-05-31", 17, 17 * 64 * USD),
    ]
    assert {e["currency"] for e in fees} == {"EUR"}
