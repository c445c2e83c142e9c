"""Statements and the daily movement of funds, read through a `StatementReader`.

`from` / `to` are read as `charger.statements.ranges` says: dates of the account's time
zone (`to` inclusive) or RFC 3339 instants (`to` exclusive). `format=csv`, or an `Accept`
header naming `text/csv` and not JSON, exports the whole range as CSV, every page of it
(`limit` and `cursor` are for the JSON pages).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Header, Query
from starlette.responses import Response, StreamingResponse

from charger.api.models import Day, Entry, Movements, Statement
from charger.api.problems import ApiProblem, responses
from charger.api.routes import AccountId, read_account
from charger.statements.export import entry_line, header_line
from charger.statements.model import InvalidCursor, Show, StatementEntry
from charger.statements.ranges import RangeError, day_range, statement_range
from charger.statements.reader import StatementReader

if TYPE_CHECKING:
    from charger.api.app import ApiServices

log = logging.getLogger("charger.api")

MAX_PAGE: Final = 1000
CSV_TYPE: Final = "text/csv; charset=utf-8"
NOT_CONFIGURED: Final = "statements are not configured (CHARGER_DATABASE_URL)"

# A date, or an instant with an offset (charger.statements.ranges reads them).
BOUND_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$"
)
DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Bound = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=BOUND_PATTERN,
        description="A date of the account's time zone (2026-11-01) or an RFC 3339 instant "
        "(2026-11-01T08:00:00Z); see the README's API section.",
    ),
]


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")  # the worker refuses unknown zones; never reached in practice


def wants_csv(format_: str | None, accept: str | None) -> bool:
    if format_ is not None:
        return format_ == "csv"
    accept = (accept or "").lower()
    return "text/csv" in accept and "application/json" not in accept


def entry_body(entry: StatementEntry, zone: ZoneInfo) -> Entry:
    return Entry(
        id=entry.entry_id,
        time=entry.occurred_at.astimezone(UTC),
        local_date=entry.occurred_at.astimezone(zone).date(),
        kind=entry.kind,
        amount_micros=entry.amount_micros,
        balance_after_micros=entry.balance_after_micros,
        currency=entry.currency,
        document=dict(entry.document),
    )


def statements_router(services: ApiServices) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def reader() -> StatementReader:
        if services.statements is None:
            services.metrics.backend_errors.labels("statements").inc()
            raise ApiProblem(503, NOT_CONFIGURED)
        return services.statements

    def down(exc: Exception) -> ApiProblem:
        services.metrics.backend_errors.labels("statements").inc()
        log.warning("the statement store failed", exc_info=exc)
        return ApiProblem(503, "statements are unavailable: the ledger store did not answer")

    def today(zone: ZoneInfo) -> date:
        return datetime.fromtimestamp(services.clock.now_ms() / 1000, zone).date()

    @router.get(
        "/accounts/{account}/statement",
        response_model=Statement,
        response_model_by_alias=True,
        responses={
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
            **responses(404, 503),
        },
        summary="Ledger entries of an account in time order, a page at a time, or as CSV",
    )
    async def get_statement(
        account: AccountId,
        from_: Annotated[Bound, Query(alias="from")] = None,
        to: Bound = None,
        show: Show = Show.ALL,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
        format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
        accept: Annotated[str | None, Header()] = None,
    ) -> Any:
        view = await read_account(services, account)
        store = reader()
        zone = zone_of(view.time_zone)
        try:
            span = statement_range(from_, to, zone, today(zone))
        except RangeError as exc:
            raise ApiProblem(400, str(exc)) from None
        if wants_csv(format_, accept):
            return await _csv(store, account, span.start, span.end, show, zone, down)
        try:
            page = await store.statement(account, span.start, span.end, show, limit, cursor)
        except InvalidCursor as exc:
            raise ApiProblem(400, f"cursor: {exc or 'not a cursor of this statement'}") from None
        except Exception as exc:
            raise down(exc) from exc
        return Statement(
            account=account,
            currency=view.currency,
            time_zone=view.time_zone,
            from_=span.start,
            to=span.end,
            show=show,
            entries=[entry_body(entry, zone) for entry in page.entries],
            next_cursor=page.next_cursor,
        )

    @router.get(
        "/accounts/{account}/movements",
        response_model=Movements,
        response_model_by_alias=True,
        responses=responses(404, 503),
        summary="Per local day: opening balance, debits and credits by kind, closing balance",
    )
    async def get_movements(
        account: AccountId,
        from_: Annotated[str | None, Query(alias="from", pattern=DATE_PATTERN)] = None,
        to: Annotated[str | None, Query(pattern=DATE_PATTERN)] = None,
    ) -> Movements:
        view = await read_account(services, account)
        store = reader()
        zone = zone_of(view.time_zone)
        try:
            first, last = day_range(from_, to, today(zone))
        except RangeError as exc:
            raise ApiProblem(400, str(exc)) from None
        try:
            days = await store.movements(account, first, last, zone)
        except Exception as exc:
            raise down(exc) from exc
        return Movements(
            account=account,
            currency=view.currency,
            time_zone=view.time_zone,
            from_=first,
            to=last,
            days=[
                Day(
                    date=day.day,
                    opening_balance_micros=day.opening_balance_micros,
                    debits_micros=sum(day.debits_by_kind_micros.values()),
                    credits_micros=sum(day.credits_by_kind_micros.values()),
                    debits_by_kind_micros=dict(day.debits_by_kind_micros),
                    credits_by_kind_micros=dict(day.credits_by_kind_micros),
                    closing_balance_micros=day.closing_balance_micros,
                )
                for day in days
            ],
        )

    return router


async def _csv(
    store: StatementReader,
    account: str,
    start: datetime,
    end: datetime,
    show: Show,
    zone: ZoneInfo,
    down: Callable[[Exception], ApiProblem],
) -> Response:
    """Every page of the range as one CSV download. The first page is read before the
    answer starts, so a store that is down is a 503, not a cut download."""
    try:
        first = await store.statement(account, start, end, show, MAX_PAGE, None)
    except Exception as exc:
        raise down(exc) from exc

    async def entries() -> AsyncIterator[StatementEntry]:
        page = first
        while True:
            for entry in page.entries:
                yield entry
            if page.next_cursor is None:
                return
            page = await store.statement(account, start, end, show, MAX_PAGE, page.next_cursor)

    async def body() -> AsyncIterator[str]:
        yield header_line()
        async for entry in entries():
            yield entry_line(entry, zone)

    name = f"statement-{account}-{start.date().isoformat()}-{end.date().isoformat()}.csv"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return StreamingResponse(
        body(),
        media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )
