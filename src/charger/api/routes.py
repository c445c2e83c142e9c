"""`GET /v1/accounts/{account}` and `POST /v1/authorize`: reads of Redis, never a write."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Final

from fastapi import APIRouter, Path
from redis.exceptions import RedisError

from charger.api.models import (
    ACCOUNT_ID_CHARS,
    Account,
    AccountStatus,
    AuthorizeRequest,
    AuthorizeResponse,
    AutoRecharge,
    CallAuthorization,
    LowBalance,
    Price,
    Rates,
    SmsAuthorization,
    VoiceRate,
)
from charger.api.problems import ApiProblem, responses
from charger.charging.authorization import AccountView, Kind, Request, authorize
from charger.events.timefmt import format_time_ms

if TYPE_CHECKING:
    from charger.api.app import ApiServices

log = logging.getLogger("charger.api")

AccountId = Annotated[str, Path(min_length=1, max_length=ACCOUNT_ID_CHARS)]
# What a Redis that is down, failing over or too slow raises through redis-py.
BACKEND_DOWN: Final = (RedisError, OSError, TimeoutError)


async def read_account(services: ApiServices, account: str, full: bool = True) -> AccountView:
    """The account, or 404; 503 when Redis does not answer."""
    try:
        view = await services.accounts.account(account, full)
    except BACKEND_DOWN as exc:
        services.metrics.backend_errors.labels("redis").inc()
        log.warning("redis did not answer an account read", extra={"error": repr(exc)})
        raise ApiProblem(503, "balances are unavailable: Redis did not answer") from exc
    if view is None:
        raise ApiProblem(404, f"no account {account!r}")
    return view


def account_body(view: AccountView) -> Account:
    return Account(
        account=view.account,
        currency=view.currency,
        balance_micros=view.balance_micros,
        held_micros=view.held_micros,
        available_micros=view.available_micros,
        credit_limit_micros=view.credit_limit_micros,
        status=AccountStatus.SUSPENDED if view.suspended else AccountStatus.ACTIVE,
        rate_plan=view.rate_plan,
        active_calls=view.active_calls,
        auto_recharge=AutoRecharge(
            enabled=view.auto_recharge_enabled,
            threshold_micros=view.auto_recharge_threshold_micros,
            amount_micros=view.auto_recharge_amount_micros,
            in_flight=view.recharge_in_flight,
        ),
        low_balance=LowBalance(threshold_micros=view.low_balance_micros),
        notify_email=view.notify_email,
        time_zone=view.time_zone,
    )


def core_request(body: AuthorizeRequest) -> Request:
    """The core's request from the route's body (each kind's shape is checked by its model)."""
    if isinstance(body, CallAuthorization):
        return Request(Kind.CALL, direction=body.direction, to=body.to)
    if isinstance(body, SmsAuthorization):
        return Request(Kind.SMS, direction=body.direction, segments=body.segments)
    return Request(Kind.FEE, amount_micros=body.amount_micros)


async def answer_authorization(services: ApiServices, body: AuthorizeRequest) -> AuthorizeResponse:
    """`POST /v1/authorize`, also served by `charger.api.fastlane` (the same answer)."""
    request = core_request(body)
    view = await read_account(services, body.account, full=False)
    plans = None
    if request.kind is not Kind.FEE:
        if not services.plans_ready():
            services.metrics.backend_errors.labels("plans").inc()
            raise ApiProblem(503, "rate plans are still loading")
        plans = services.plans().get(view.rate_plan)
    now = format_time_ms(services.clock.now_ms())
    answer = authorize(view, request, plans, now, services.max_call_s)
    price = None
    if answer.call_price is not None:
        rate = answer.call_price
        price = Price(
            currency=view.currency,
            rate_plan=rate.rate_plan,
            rate_plan_version=rate.rate_plan_version,
            prefix=rate.prefix,
            per_minute_micros=rate.per_minute_micros,
            connect_fee_micros=rate.connect_fee_micros,
            increments=rate.increments,
        )
    elif answer.price_micros is not None:
        price = Price(currency=view.currency, amount_micros=answer.price_micros)
    return AuthorizeResponse(
        allowed=answer.allowed,
        reason=answer.reason,
        available_micros=answer.available_micros,
        max_duration_s=answer.max_duration_s,
        price=price,
    )


def v1_router(services: ApiServices) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get(
        "/accounts/{account}",
        response_model=Account,
        responses=responses(404, 503),
        summary="Balance, status and settings of an account",
    )
    async def get_account(account: AccountId) -> Account:
        return account_body(await read_account(services, account))

    @router.get(
        "/accounts/{account}/rates",
        response_model=Rates,
        responses=responses(404, 503),
        summary="The rates of the account's plan in force now",
    )
    async def get_rates(account: AccountId) -> Rates:
        view = await read_account(services, account)
        if not services.plans_ready():
            services.metrics.backend_errors.labels("plans").inc()
            raise ApiProblem(503, "rate plans are still loading")
        versions = services.plans().get(view.rate_plan)
        plan = versions.at(format_time_ms(services.clock.now_ms())) if versions else None
        if plan is None:
            raise ApiProblem(404, f"rate plan {view.rate_plan!r} has no version in force")
        return Rates(
            rate_plan=plan.id,
            version=plan.version,
            effective_from=plan.effective_from,
            currency=plan.currency,
            voice=[
                VoiceRate(
                    direction=rate.direction,
                    prefix=rate.prefix,
                    per_minute_micros=rate.per_minute_micros,
                    connect_fee_micros=rate.connect_fee_micros,
                    increments=str(rate.increments),
                )
                for rate in sorted(plan.voice, key=lambda r: (r.direction, r.prefix))
            ],
            sms_outbound_per_segment_micros=plan.sms_out_micros,
            sms_inbound_per_segment_micros=plan.sms_in_micros,
            ring_through_attempt_micros=plan.ring_through_micros,
        )

    @router.post(
        "/authorize",
        response_model=AuthorizeResponse,
        response_model_exclude_none=True,
        responses=responses(404, 413, 503),
        summary="May the account place this call, send this text, pay this fee? A read.",
    )
    async def post_authorize(body: AuthorizeRequest) -> AuthorizeResponse:
        return await answer_authorization(services, body)

    return router
