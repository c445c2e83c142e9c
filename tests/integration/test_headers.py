"""Record headers on the real broker and Redis: what a refused record keeps on the DLQ, and
the W3C trace context charger carries from an input to what it causes (or makes).

A DLQ record keeps the refused record's key, value and headers (in order, duplicates and
null values included, up to 16 KiB), then Spring's `kafka_dlt-*` headers with the original
timestamp and its type, and `charger.error`. Every other output carries the `traceparent`
(and `tracestate`) of its input unchanged: it is a child of the span that produced the
input. An input without one gets one derived from where it was read; an output no input
caused, one derived from its id. Both come out the same after a SIGKILL between apply and
publish, and after Redis forgot and the worker applied the input again.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections import defaultdict

from charger.clock import ManualClock
from charger.events.tracecontext import for_id, for_record
from charger.protocol.outputs import decode_entry
from charger_tools.redis_state import forget_since, remember
from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Out, Run, Sent
from tests.kit.records import balance_credited, call_started, fee_charged, sms_sent
from tests.kit.waits import until
from tests.kit.worker import Worker, running

EV = names.TELEPHONY_EVENTS
ACC = names.BILLING_ACCOUNTS
SMS = 7_900  # std-usd, one segment out
MADE = re.compile(rb"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")
Headers = list[tuple[str, bytes | None]]
DEAD_LETTER_NAMES = [
    headers_of.DLT_ORIGINAL_TOPIC,
    headers_of.DLT_ORIGINAL_PARTITION,
    headers_of.DLT_ORIGINAL_OFFSET,
    headers_of.DLT_ORIGINAL_TIMESTAMP,
    headers_of.DLT_ORIGINAL_TIMESTAMP_TYPE,
    headers_of.DLT_EXCEPTION_FQCN,
    headers_of.DLT_EXCEPTION_MESSAGE,
    headers_of.ERROR,
]


def a_traceparent() -> bytes:
    """A producer's traceparent: a trace id and span id of its own."""
    return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode()


def made_for(sent: Sent, own: Headers | None = None) -> bytes:
    """The traceparent charger makes for the input `sent` (no traceparent of its own)."""
    return for_record(sent.topic, sent.partition, sent.offset, sent.timestamp_ms, own or [])


def trace_of(out: Out) -> tuple[bytes | None, bytes | None]:
    return out.headers.get(headers_of.TRACEPARENT), out.headers.get(headers_of.TRACESTATE)


def dead_letter_of(dlq: list[Out], sent: Sent) -> Out:
    """The DLQ record of the input `sent`, found by Spring's original-* headers."""
    found = [
        d
        for d in dlq
        if d.headers[headers_of.DLT_ORIGINAL_TOPIC].decode() == sent.topic
        and headers_of.decode_int32(d.headers[headers_of.DLT_ORIGINAL_PARTITION]) == sent.partition
        and headers_of.decode_int64(d.headers[headers_of.DLT_ORIGINAL_OFFSET]) == sent.offset
    ]
    assert len(found) == 1, (sent, len(found))
    return found[0]


def check_dead_letter(d: Out, sent: Sent, own: Headers, reason: str) -> Headers:
    """`d` keeps `own` first, in order, then the dead-letter headers of `sent` refused for
    `reason`; returns what follows those."""
    assert d.header_list[: len(own)] == own
    after = d.header_list[len(own) :]
    assert [name for name, _ in after[: len(DEAD_LETTER_NAMES)]] == DEAD_LETTER_NAMES
    dead = dict(after[: len(DEAD_LETTER_NAMES)])
    assert dead[headers_of.DLT_ORIGINAL_TOPIC] == sent.topic.encode()
    assert headers_of.decode_int64(dead[headers_of.DLT_ORIGINAL_TIMESTAMP] or b"") == (
        sent.timestamp_ms
    )
    assert dead[headers_of.DLT_ORIGINAL_TIMESTAMP_TYPE] == b"CreateTime"
    assert dead[headers_of.DLT_EXCEPTION_FQCN] == f"charger.refused.{reason}".encode()
    assert dead[headers_of.DLT_EXCEPTION_MESSAGE]  # the detail sentence
    assert dead[headers_of.ERROR] == reason.encode()
    return after[len(DEAD_LETTER_NAMES) :]


async def test_a_refused_record_keeps_key_value_and_headers_with_springs_dead_letter_headers(
    run: Run,
) -> None:
    a, ghost = run.acct("kept"), run.acct("ghost")
    parent = a_traceparent()
    own1: Headers = [
        ("content-type", b"application/json"),
        ("x-correlation-id", b"corr-1"),
        ("x-dup", b"first"),
        ("x-dup", b"second"),
        ("x-null", None),
        (headers_of.TRACEPARENT, parent),
        (headers_of.TRACESTATE, b"vendor=abc"),
    ]
    own2: Headers = [("x-correlation-id", b"corr-2")]
    # 20 headers of about 1 KB: 16 fit in 16 KiB, 4 are left off and counted
    own3: Headers = [(f"x-big-{n:02}", bytes([65 + n]) * 1000) for n in range(20)]
    async with running(run.settings):
        await run.account(a, credit=1_000_000)
        bad = await run.send_record(EV, a, b"{not json", own1, run.t0_ms - 5_000)
        unknown = sms_sent(run, ghost, f"g-{run.uid}")
        refused = await run.send_record(EV, ghost, unknown, own2, run.t0_ms - 4_000)
        big = await run.send_record(EV, a, b"[]", own3, run.t0_ms - 3_000)
        await run.wait_idle(60)
    dlq = await run.outputs(names.DLQ)

    first = dead_letter_of(dlq, bad)
    assert (first.key, first.value) == (a.encode(), b"{not json")
    # it brought its own trace context: charger adds none
    assert check_dead_letter(first, bad, own1, "malformed_json") == []

    second = dead_letter_of(dlq, refused)
    assert second.value is not None and second.value.startswith(b'{"id":')
    made = check_dead_letter(second, refused, own2, "unknown_account")
    assert made == [(headers_of.TRACEPARENT, made_for(refused, own2))]
    assert MADE.match(made[0][1] or b"")

    third = dead_letter_of(dlq, big)
    rest = check_dead_letter(third, big, own3[:16], "not_an_object")
    assert rest[0] == (headers_of.HEADERS_DROPPED, b"4")
    assert [name for name, _ in rest[1:]] == [headers_of.TRACEPARENT]


async def test_a_traceparent_is_carried_to_what_its_input_causes_and_made_where_none(
    run: Run,
) -> None:
    a = run.acct("traced")
    parent, state = a_traceparent(), b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    traced: Headers = [(headers_of.TRACEPARENT, parent), (headers_of.TRACESTATE, state)]
    async with running(run.settings):
        await run.account(a, credit=10_000)
        await run.wait_idle(60)
        plain = await run.send_record(EV, a, sms_sent(run, a, f"plain-{run.uid}"))
        # 2,100 left: this one takes the account below its floor and suspends it
        await run.send_record(EV, a, sms_sent(run, a, f"traced-{run.uid}"), traced)
        fee = fee_charged(run, a, f"fee-{run.uid}", amount_micros=1_000)
        await run.send_record(ACC, a, fee, traced)
        await run.wait_idle(60)

    ledger = {o.json()["id"]: o for o in await run.outputs(names.LEDGER)}
    # carried unchanged: the same trace id, and the input's span as the parent, so the
    # ledger entry's consumer continues the producer's trace
    assert trace_of(ledger[f"ev:traced-{run.uid}:sms_out"]) == (parent, state)
    assert trace_of(ledger[f"ac:fee-{run.uid}:fee"]) == (parent, state)
    # made where the input had none: valid, and the same whenever the input is applied
    made, no_state = trace_of(ledger[f"ev:plain-{run.uid}:sms_out"])
    assert made is not None and MADE.match(made) and no_state is None
    assert made == made_for(plain)
    assert made[3:35] != parent[3:35]
    # everything the traced input caused carries its trace context
    (suspended,) = [c for c in await run.outputs(names.TELEPHONY_COMMANDS) if c.key == a.encode()]
    assert suspended.json()["type"] == "account.suspended"
    assert trace_of(suspended) == (parent, state)
    notes = [n for n in await run.outputs(names.NOTIFICATIONS) if n.key == a.encode()]
    assert [trace_of(n) for n in notes] == [(parent, state)]
    (result,) = [r for r in await run.outputs(names.CHARGE_RESULTS) if r.key == a.encode()]
    assert trace_of(result) == (parent, state)


async def test_an_output_of_a_tick_gets_a_trace_context_made_from_its_id(run: Run) -> None:
    a = run.acct("cut")
    call = f"c-{run.uid}"
    await run.account(a, credit=100_000)  # 10 s at $0.60 a minute
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as rt:
        started = call_started(run, a, f"s-{call}", call_id=call)
        await run.send_record(EV, a, started, [(headers_of.TRACEPARENT, a_traceparent())])
        await run.wait_idle(60)
        for second in range(0, 31):
            clock.set(run.t0_ms + second * 1000)
            await rt.worker.tick()
        await run.wait_idle(60)
    mine = [c for c in await run.outputs(names.TELEPHONY_COMMANDS) if c.key == a.encode()]
    cutoff = next(c for c in mine if c.json()["type"] == "call.cutoff")
    assert cutoff.json()["id"] == f"cutoff:{a}:{call}"
    # caused by the tick, not by the call's start: made from its id
    assert trace_of(cutoff) == (for_id(f"cutoff:{a}:{call}"), None)
    notes = [n for n in await run.outputs(names.NOTIFICATIONS) if n.key == a.encode()]
    notice = next(n for n in notes if n.json()["type"] == "call_cut_off")
    assert trace_of(notice) == trace_of(cutoff)  # rendered from the same output


async def test_headers_come_out_the_same_after_a_sigkill_between_apply_and_publish(
    run: Run,
) -> None:
    a = run.acct("killed")
    parent = a_traceparent()
    own: Headers = [("x-correlation-id", b"corr-k"), (headers_of.TRACEPARENT, parent)]
    upserted = run.event(
        "account.upserted",
        a,
        f"up-{a}",
        currency="USD",
        rate_plan="std-usd",
        credit_limit_micros=0,
    )
    await run.send_record(ACC, a, upserted)
    credit = balance_credited(run, a, f"cr-{run.uid}", amount_micros=1_000_000)
    credited = await run.send_record(ACC, a, credit)
    await run.send_record(EV, a, sms_sent(run, a, f"t-{run.uid}"), own)
    plain = await run.send_record(EV, a, sms_sent(run, a, f"p-{run.uid}"))
    bad = await run.send_record(EV, a, b"{not json", own, run.t0_ms - 1_000)

    doomed = Worker(run, failpoint="kill_after_apply")
    assert await doomed.run_to_exit(90) == -signal.SIGKILL, doomed.tail()
    assert await run.outputs(names.LEDGER) == [] and await run.outputs(names.DLQ) == []
    # Money moved and the outputs wait in the outbox, each with its trace context.
    waiting = set()
    for slot in range(run.keys.slots):
        for _, entry in await run.redis.xrange(run.keys.outbox(slot)):
            waiting |= {output.trace[:55] for output in decode_entry(entry)}
    expected = {parent, made_for(plain), made_for(credited)}
    assert expected <= waiting

    worker = Worker(run)
    try:
        await run.wait_idle(90)
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.kill()
    ledger = {o.json()["id"]: o for o in await run.outputs(names.LEDGER)}
    assert len(ledger) == 3  # the top-up and the two texts, once each
    assert trace_of(ledger[f"ev:t-{run.uid}:sms_out"]) == (parent, None)
    assert trace_of(ledger[f"ev:p-{run.uid}:sms_out"]) == (made_for(plain), None)
    assert trace_of(ledger[f"ac:cr-{run.uid}:topup"]) == (made_for(credited), None)
    (dead,) = await run.outputs(names.DLQ)
    assert (dead.key, dead.value) == (a.encode(), b"{not json")
    assert check_dead_letter(dead, bad, own, "malformed_json") == []


async def test_headers_come_out_the_same_when_redis_forgot_and_the_input_is_applied_again(
    run: Run,
) -> None:
    a = run.acct("forgot")
    parent = a_traceparent()
    async with running(run.settings_with(watermark_check_s=0.2)) as rt:
        await run.account(a, credit=1_000_000)
        # a first text, so the slot holds a watermark of the texts' partition to go back to
        await run.send_record(EV, a, sms_sent(run, a, f"first-{run.uid}"))
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)
        await run.send_record(
            EV, a, sms_sent(run, a, f"t-{run.uid}"), [(headers_of.TRACEPARENT, parent)]
        )
        plain = await run.send_record(EV, a, sms_sent(run, a, f"p-{run.uid}"))
        await run.wait_idle(60)
        await forget_since(run.redis, state)  # the texts are charged again from Kafka

        copies: dict[str, list[Out]] = defaultdict(list)

        async def published_twice() -> bool:
            copies.clear()
            for o in await run.outputs(names.LEDGER):
                copies[o.json()["id"]].append(o)
            again = [k for k, c in copies.items() if len(c) == 2]
            return sorted(again) == [f"ev:p-{run.uid}:sms_out", f"ev:t-{run.uid}:sms_out"]

        await until(published_twice, "the forgotten texts published again", 60)
        assert rt.metrics.registry.get_sample_value("charger_redis_forgotten_records_total")
    for entry_id in (f"ev:t-{run.uid}:sms_out", f"ev:p-{run.uid}:sms_out"):
        first, again = copies[entry_id]
        assert (first.value, first.header_list) == (again.value, again.header_list), entry_id
    assert trace_of(copies[f"ev:t-{run.uid}:sms_out"][0]) == (parent, None)
    assert trace_of(copies[f"ev:p-{run.uid}:sms_out"][0]) == (made_for(plain), None)
    assert await run.balance(a) == 1_000_000 - 3 * SMS
