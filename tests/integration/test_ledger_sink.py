"""`charger ledger-sink` on the real broker and a real PostgreSQL: every entry stored once,
across republishing, a SIGKILL mid-stream and the database away for a while; another payload
under a known id refused and reported; settings and outages told in one line; SIGTERM exits
clean."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from charger.events.timefmt import parse_time_ms
from tests.kit.harness import Stack, run_start_ms
from tests.kit.http import get_async
from tests.kit.ledger_docs import LedgerBook, decoded
from tests.kit.ledger_sink import (
    LedgerTopic,
    SinkProcess,
    metric,
    refused,
    rows,
    sink_env,
)
from tests.kit.waits import until

KINDS = ["call", "sms_out", "sms_in", "topup", "fee", "adjustment", "ring_through", "recharge"]


def stream(book: LedgerBook, accounts: list[str], n: int, seed: int) -> list[tuple[str, bytes]]:
    """`n` entries over `accounts`, a few seconds apart, as (account, value)."""
    rng = random.Random(seed)
    t0 = run_start_ms()
    out = []
    for i in range(n):
        account = rng.choice(accounts)
        kind = rng.choice(KINDS)
        credit = kind in ("topup", "recharge")
        amount = rng.randint(1, 5_000_000) * (1 if credit else -1)
        out.append((account, book.move(account, kind, amount, t0 + i * 1000)))
    return out


async def stored_count(url: str, accounts: list[str]) -> int:
    return len(await rows(url, accounts))


def check_rows(stored: dict[str, dict[str, Any]], published: list[tuple[str, bytes]]) -> None:
    """Every published entry is one row, whose columns and document are the entry's."""
    docs = {decoded(v)["id"]: decoded(v) for _, v in published}
    assert set(stored) == set(docs)
    for entry_id, doc in docs.items():
        row = stored[entry_id]
        assert row["document"] == doc
        assert (row["account"], row["kind"], row["currency"]) == (
            doc["account"],
            doc["kind"],
            doc["currency"],
        )
        assert row["amount_micros"] == doc["amount_micros"]
        assert row["balance_after_micros"] == doc["balance_after_micros"]
        assert round(row["occurred_at"].timestamp() * 1000) == parse_time_ms(doc["time"])


async def test_published_entries_are_stored_once_each(stack: Stack, database: str) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    accounts = [f"st-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
    published = stream(book, accounts, 300, seed=1)
    # The relay republishes after a crash: the same records again, byte for byte.
    again = published[:40]
    await topic.publish(published + again)

    sink = SinkProcess(sink_env(stack.bootstrap, database, topic.group_id))
    try:
        await sink.wait_ready()
        await until(
            lambda: _count_is(database, accounts, 300),
            "300 entries stored",
            60,
            process=sink.proc,
            detail=sink.tail,
        )

        async def all_counted() -> bool:
            text = await sink.metrics()
            return metric(text, "charger_sink_records_total", result="stored") == 300 and (
                metric(text, "charger_sink_records_total", result="duplicate") == 40
            )

        await until(all_counted, "stored and duplicate counted", 30, process=sink.proc)
        check_rows(await rows(database, accounts), published)
        assert await refused(database) == []
        text = await sink.metrics()
        assert metric(text, "charger_sink_batch_commit_seconds_count") >= 1

        lags: list[str] = []

        async def lag_sampled_at_zero() -> bool:
            # Sampled every second: a sample taken before the last batch may still show.
            nonlocal lags
            text = await sink.metrics()
            lags = [ln for ln in text.splitlines() if ln.startswith("charger_sink_lag{")]
            return bool(lags) and all(float(ln.rsplit(" ", 1)[1]) == 0 for ln in lags)

        await until(
            lag_sampled_at_zero,
            "the lag sampled per partition, at zero",
            10,
            process=sink.proc,
            detail=lambda: "\n".join(lags),
        )
    finally:
        code = sink.stop()
    assert code == 0, sink.tail()
    assert "ledger sink stopped" in sink.output


async def _count_is(url: str, accounts: list[str], n: int) -> bool:
    return await stored_count(url, accounts) == n


async def test_a_sink_killed_mid_stream_and_the_entries_republished_stores_each_once(
    stack: Stack, database: str
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    accounts = [f"kl-{uuid.uuid4().hex[:8]}-{n}" for n in range(20)]
    published = stream(book, accounts, 6000, seed=2)
    env = sink_env(stack.bootstrap, database, topic.group_id, CHARGER_BATCH_MAX_RECORDS="200")

    sink = SinkProcess(env)
    await sink.wait_ready()
    producing = asyncio.create_task(_publish_slowly(topic, published, chunk=500))
    # SIGKILL once part of the stream is stored and more is on its way.
    await until(
        lambda: _count_above(database, accounts, 1500),
        "a part stored",
        60,
        process=sink.proc,
        detail=sink.tail,
    )
    sink.kill()
    before_restart = await stored_count(database, accounts)
    await producing
    assert before_restart < len(published)

    # Restarted, and the producer publishes everything again (as a relay replaying its
    # outbox would): the committed offsets lag the database, and every id comes twice.
    restarted = SinkProcess(env)
    try:
        await topic.publish(published)
        await until(
            lambda: _count_is(database, accounts, len(published)),
            "every entry stored",
            120,
            process=restarted.proc,
            detail=restarted.tail,
        )

        async def republished_seen() -> bool:
            text = await restarted.metrics()
            return metric(text, "charger_sink_records_total", result="duplicate") >= len(published)

        await until(
            republished_seen,
            "the republished entries read",
            60,
            process=restarted.proc,
            detail=restarted.tail,
        )
        stored = await rows(database, accounts)
        check_rows(stored, published)
        async with await psycopg.AsyncConnection.connect(database) as conn:
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT entry_id) FROM ledger_entries"
            )
            assert await cur.fetchone() == (len(published), len(published))
        assert await refused(database) == []
        # The first record read under each id is the one kept: its offset is the first.
        text = await restarted.metrics()
        assert metric(text, "charger_sink_records_total", result="conflict") == 0
    finally:
        assert restarted.stop() == 0, restarted.tail()


async def _publish_slowly(topic: LedgerTopic, entries: list[tuple[str, bytes]], chunk: int) -> None:
    for i in range(0, len(entries), chunk):
        await topic.publish(entries[i : i + chunk])
        await asyncio.sleep(0.05)


async def _count_above(url: str, accounts: list[str], n: int) -> bool:
    return await stored_count(url, accounts) > n


async def test_a_database_outage_is_retried_and_every_entry_stored_once(
    stack: Stack, postgres: str, database: str
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    accounts = [f"db-{uuid.uuid4().hex[:8]}-{n}" for n in range(4)]
    published = stream(book, accounts, 200, seed=4)
    sink = SinkProcess(sink_env(stack.bootstrap, database, topic.group_id))
    # On the server's own database: the sink's lets no one in during the outage.
    admin = await psycopg.AsyncConnection.connect(postgres, autocommit=True)
    dbname = conninfo_to_dict(database)["dbname"]
    allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
    name = sql.Identifier(str(dbname))
    try:
        await sink.wait_ready()
        await topic.publish(published[:100])

        async def first_half_committed() -> bool:
            text = await sink.metrics()
            return metric(text, "charger_sink_records_total", result="stored") == 100

        await until(first_half_committed, "100 entries stored", 60, process=sink.proc)
        # The database goes away for the sink: its connection dropped, new ones refused.
        await admin.execute(allow.format(name, sql.SQL("false")))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (dbname,),
        )
        await topic.publish(published[100:])

        async def failing_again() -> bool:
            text = await sink.metrics()
            return metric(text, "charger_sink_errors_total", dependency="postgres") >= 2

        await until(failing_again, "batches failing on PostgreSQL", 30, process=sink.proc)
        status, _ = await get_async(f"http://127.0.0.1:{sink.web_port}/ready")
        assert status == 503

        await admin.execute(allow.format(name, sql.SQL("true")))
        await until(
            lambda: _count_is(database, accounts, 200),
            "the rest stored once the database is back",
            60,
            process=sink.proc,
            detail=sink.tail,
        )
        await sink.wait_ready()
        check_rows(await rows(database, accounts), published)
        text = await sink.metrics()
        assert metric(text, "charger_sink_records_total", result="duplicate") == 0
        assert metric(text, "charger_sink_errors_total", dependency="kafka") == 0
        assert metric(text, "charger_sink_errors_total", dependency="other") == 0
        # The log lines the runbook names: the first failure with its traceback, one line
        # per further attempt, the recovery once.
        await until(lambda: "ledger batch recovered" in sink.output, "the recovery logged", 10)
        lines = [orjson.loads(ln) for ln in sink.output.splitlines() if "ledger batch" in ln]
        first, *again, recovered = lines
        assert first["message"].startswith("ledger batch failed;") and first["level"] == "error"
        assert (first["dependency"], "exc" in first) == ("postgres", True)
        assert again and all(ln["message"].startswith("ledger batch failed again") for ln in again)
        assert {ln["level"] for ln in again} == {"warning"} and not any("exc" in ln for ln in again)
        assert recovered["message"] == "ledger batch recovered"
        assert recovered["attempts"] == len(again) + 1
    finally:
        code = sink.stop()
        await admin.execute(allow.format(name, sql.SQL("true")))
        await admin.close()
    assert code == 0, sink.tail()


async def test_another_payload_under_a_known_id_is_reported_and_not_stored(
    stack: Stack, database: str
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    account = f"cf-{uuid.uuid4().hex[:8]}"
    first = book.move(account, "sms_out", -7_900, run_start_ms())
    doc = decoded(first)
    changed = orjson.dumps({**doc, "amount_micros": -15_800})
    recreated = orjson.dumps({**doc, "balance_after_micros": doc["balance_after_micros"] + 1})
    later = book.move(account, "topup", 5_000_000, run_start_ms() + 1000)
    await topic.publish(
        [
            (account, first),
            (account, changed),
            (account, recreated),
            (account, b"{oops"),
            (account, later),
            (account, changed),
        ]
    )
    sink = SinkProcess(sink_env(stack.bootstrap, database, topic.group_id))
    try:
        await sink.wait_ready()

        async def counted() -> bool:
            text = await sink.metrics()
            return (
                metric(text, "charger_sink_records_total", result="stored") == 2
                and metric(text, "charger_sink_records_total", result="conflict") == 2
            )

        await until(counted, "the records judged", 60, process=sink.proc, detail=sink.tail)
        text = await sink.metrics()
        assert metric(text, "charger_sink_records_total", result="recreated") == 1
        assert metric(text, "charger_sink_records_total", result="malformed") == 1
        stored = await rows(database, [account])
        assert stored[doc["id"]]["document"] == doc  # the first payload stays
        assert stored[doc["id"]]["amount_micros"] == -7_900
        kept = sorted(await refused(database), key=lambda r: r["ledger_offset"])
        assert [(r["reason"], r["entry_id"]) for r in kept] == [
            ("conflict", doc["id"]),
            ("malformed", None),
            ("conflict", doc["id"]),
        ]
        assert kept[0]["document"]["amount_micros"] == -15_800
        assert "amount_micros" in kept[0]["detail"]
        await until(lambda: "ledger record refused" in sink.output, "the conflict logged", 10)
        lines = [orjson.loads(ln) for ln in sink.output.splitlines() if "record refused" in ln]
        assert {ln["reason"] for ln in lines} == {"conflict", "malformed"}
        assert all(ln["level"] == "error" for ln in lines)
    finally:
        assert sink.stop() == 0, sink.tail()


async def test_sigterm_commits_the_batch_in_hand_and_exits_zero(
    stack: Stack, database: str
) -> None:
    topic = await LedgerTopic.at_end(stack.bootstrap)
    book = LedgerBook()
    accounts = [f"tm-{uuid.uuid4().hex[:8]}"]
    published = stream(book, accounts, 2000, seed=3)
    sink = SinkProcess(
        sink_env(stack.bootstrap, database, topic.group_id, CHARGER_BATCH_MAX_RECORDS="100")
    )
    await sink.wait_ready()
    await topic.publish(published)
    await until(
        lambda: _count_above(database, accounts, 0), "entries arriving", 30, process=sink.proc
    )
    began = time.monotonic()
    code = await asyncio.to_thread(sink.stop, 30.0)
    assert code == 0, sink.tail()
    assert time.monotonic() - began < 10
    # What was stored was committed: a new sink in the group starts right after it and
    # finds nothing twice.
    again = SinkProcess(sink_env(stack.bootstrap, database, topic.group_id))
    try:
        await until(
            lambda: _count_is(database, accounts, len(published)),
            "the rest stored",
            60,
            process=again.proc,
            detail=again.tail,
        )
        text = await again.metrics()
        assert metric(text, "charger_sink_records_total", result="duplicate") == 0
    finally:
        assert again.stop() == 0


def test_an_unreachable_database_is_one_line_and_exit_status_1(stack: Stack) -> None:
    secret = "s3cret-pw-" + uuid.uuid4().hex[:6]
    env = sink_env(
        stack.bootstrap, f"postgresql://charger:{secret}@127.0.0.1:1/charger", "nobody-home"
    )
    done = subprocess.run(
        [sys.executable, "-m", "charger", "ledger-sink"],
        env={**__import__("os").environ, **env, "CHARGER_DATABASE_TIMEOUT_MS": "2000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charger ledger-sink: cannot use PostgreSQL"), (
        done.stderr
    )
    assert secret not in done.stderr + done.stdout


def test_a_missing_or_wrong_database_url_is_refused_before_anything_starts(
    stack: Stack,
) -> None:
    env = {**__import__("os").environ, "CHARGER_KAFKA_BOOTSTRAP": stack.bootstrap}
    env.pop("CHARGER_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "charger", "ledger-sink"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (
        1,
        "charger ledger-sink: CHARGER_DATABASE_URL is required (a postgresql:// URL)",
    )
    secret = "pw-" + uuid.uuid4().hex[:6]
    env["CHARGER_DATABASE_URL"] = f"mysql://u:{secret}@h/db"
    done = subprocess.run(
        [sys.executable, "-m", "charger", "ledger-sink"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "CHARGER_DATABASE_URL must be a postgresql:// URL" in (
        done.stderr
    )
    assert secret not in done.stderr
