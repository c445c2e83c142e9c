"""Rate plan versions: documents, files, the plan book, and which version is in force when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from charger.kafka.plans_reader import PlanBook
from charger.rating import PlanError, PlanVersions, RatePlan, load_plan_versions, load_plans
from charger.rating.plans import plan_from_dict
from charger.rating.versions import by_id, parse_record_key, record_key

T1 = "2026-12-01T00:00:00.000Z"
T2 = "2027-01-01T00:00:00.000Z"


def doc(version: int | None = None, start: str | None = None, **changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": "tier",
        "currency": "USD",
        "voice": [{"prefix": "1", "direction": "outbound", "per_minute": "0.60"}],
    }
    if version is not None:
        d["version"] = version
    if start is not None:
        d["effective_from"] = start
    return d | changes


def plan(version: int = 0, start: str | None = None) -> RatePlan:
    return plan_from_dict(doc(version or None, start))


# (versions as (number, effective_from), event time, number in force or None)
SELECTION = [
    ([(0, None)], "1970-01-01T00:00:00.000Z", 0),
    ([(0, None)], T2, 0),
    ([(1, None), (2, T1)], "2026-11-30T23:59:59.999Z", 1),
    ([(1, None), (2, T1)], T1, 2),  # its start counts
    ([(1, None), (2, T1)], "2026-12-01T00:00:00.001Z", 2),
    ([(1, T1), (2, T2)], "2026-11-30T23:59:59.999Z", None),  # before every version
    ([(1, T1), (2, T2)], T1, 1),
    ([(1, T1), (2, T2)], "2026-12-31T23:59:59.999Z", 1),
    ([(1, T1), (2, T2)], T2, 2),
    ([(2, T2), (1, T1)], T2, 2),  # given in any order
    ([(3, T1), (4, T1)], T1, 4),  # same start: the higher version wins
    ([(5, None), (1, None)], T1, 5),
    ([(7, T1)], "2026-11-30T23:59:59.999Z", None),
    ([(7, T1)], T1, 7),
]


@pytest.mark.parametrize(("versions", "time", "expected"), SELECTION)
def test_the_version_in_force_is_the_latest_started(
    versions: list[tuple[int, str | None]], time: str, expected: int | None
) -> None:
    book = PlanVersions(plan(n, start) for n, start in versions)
    found = book.at(time)
    assert (None if found is None else found.version) == expected


@pytest.mark.parametrize(("start", "time", "in_force"), [(None, T1, True), (T1, T1, True)])
def test_a_plan_alone_answers_for_its_own_start(
    start: str | None, time: str, in_force: bool
) -> None:
    p = plan(1, start)
    assert (p.at(time) is p) is in_force
    assert plan(1, T2).at(T1) is None


def test_versions_must_be_of_one_id_and_one_per_number() -> None:
    with pytest.raises(ValueError, match="one per number"):
        PlanVersions([plan(1), plan(1, T1)])
    with pytest.raises(ValueError, match="share the id"):
        PlanVersions([plan(1), plan_from_dict(doc(2, id="other"))])
    assert set(by_id([plan(1), plan(2, T1), plan_from_dict(doc(id="x"))])) == {"tier", "x"}


def test_a_document_without_version_is_version_zero_in_force_always() -> None:
    p = plan_from_dict(doc())
    assert (p.version, p.effective_from) == (0, None)
    q = plan_from_dict(doc(3, T1))
    assert (q.version, q.effective_from) == (3, T1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": -1}, "version"),
        ({"version": True}, "version"),
        ({"version": "2"}, "version"),
        ({"version": 1.0}, "version"),
        ({"effective_from": "2026-12-01T00:00:00Z"}, "effective_from"),  # no milliseconds
        ({"effective_from": "2026-12-01 00:00:00.000Z"}, "effective_from"),
        ({"effective_from": "2026-02-30T00:00:00.000Z"}, "effective_from"),
        ({"effective_from": 1764547200000}, "effective_from"),
    ],
)
def test_bad_versions_and_starts_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(PlanError) as err:
        plan_from_dict(doc() | changes)
    assert err.value.field == field


def test_a_file_holds_several_versions_of_an_id_but_not_one_twice(tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    path.write_text(orjson.dumps([doc(1), doc(2, T1)]).decode(), encoding="utf-8")
    assert sorted(p.version for p in load_plan_versions(path)) == [1, 2]
    with pytest.raises(PlanError, match="several versions"):
        load_plans(path)  # by id, one plan each: which version would be a guess
    path.write_text(orjson.dumps([doc(1), doc(1, T1)]).decode(), encoding="utf-8")
    with pytest.raises(PlanError, match="duplicate plan id and version 1"):
        load_plan_versions(path)


@pytest.mark.parametrize(
    ("plan_id", "version", "key"), [("std-usd", 0, "std-usd"), ("std-usd", 12, "std-usd@12")]
)
def test_record_keys_round_trip(plan_id: str, version: int, key: str) -> None:
    assert record_key(plan_id, version) == key
    assert parse_record_key(key) == (plan_id, version)


@pytest.mark.parametrize("key", ["p@", "p@x", "p@0", "p@01", "p@-1"])
def test_a_key_with_a_bad_version_part_is_not_a_plan_key(key: str) -> None:
    with pytest.raises(ValueError):
        parse_record_key(key)


def upserted(d: dict[str, Any]) -> bytes:
    record = {"id": "r", "type": "rate_plan.upserted", "time": "2026-11-22T10:00:00.000Z"}
    return orjson.dumps(record | {"plan": d})


def in_force(book: PlanBook, time: str) -> tuple[int, int] | None:
    p = book.current()["tier"].at(time)
    return None if p is None else (p.version, p.voice[0].per_minute_micros)


def test_the_book_adds_new_versions_and_replaces_the_same_version() -> None:
    book = PlanBook([plan_from_dict(doc())])  # a file's plan without versions
    assert book.apply(b"tier@2", upserted(doc(2, T1, voice=_price("1.20")))) is None
    assert in_force(book, "2026-11-30T23:59:59.999Z") == (0, 600_000)  # the file's, before
    assert in_force(book, T1) == (2, 1_200_000)
    assert book.apply(b"tier@2", upserted(doc(2, T1, voice=_price("1.10")))) is None
    assert in_force(book, T1) == (2, 1_100_000)  # the same version: replaced
    assert book.apply(b"tier@3", upserted(doc(3, T2, voice=_price("1.50")))) is None
    assert [in_force(book, t) for t in (T1, T2)] == [(2, 1_100_000), (3, 1_500_000)]
    assert book.apply(b"tier@2", None) is None  # withdrawn: the file's version again
    assert [in_force(book, t) for t in (T1, T2)] == [(0, 600_000), (3, 1_500_000)]


def test_the_book_keeps_plans_without_versions_as_before() -> None:
    book = PlanBook({"tier": plan_from_dict(doc())})
    assert book.apply(b"tier", upserted(doc(voice=_price("0.70")))) is None
    assert in_force(book, T1) == (0, 700_000)
    assert book.apply(b"tier", None) is None
    assert in_force(book, T1) == (0, 600_000)


@pytest.mark.parametrize(
    ("key", "d", "detail"),
    [
        (b"tier", doc(2, T1), "is not 'tier@2'"),  # would be compacted away by version 3
        (b"tier@3", doc(2, T1), "is not 'tier@2'"),
        (b"tier@1", doc(), "is not the plan id 'tier'"),
    ],
)
def test_a_version_under_another_key_is_refused(key: bytes, d: dict[str, Any], detail: str) -> None:
    book = PlanBook([plan_from_dict(doc())])
    bad = book.apply(key, upserted(d))
    assert bad is not None and bad.reason == "invalid_rate_plan" and detail in bad.detail
    assert in_force(book, T2) == (0, 600_000)


def _price(per_minute: str) -> list[dict[str, str]]:
    return [{"prefix": "1", "direction": "outbound", "per_minute": per_minute}]
