"""Versions of a rate plan id, and which one is in force at an instant.

A plan id may have several versions (``version`` in the plan document), each in force from
its ``effective_from`` until the next one starts. Usage is rated with the version in force
at the event's time: for a call, its answer time. A version without ``effective_from`` is in
force since forever; versions that start at the same instant are ordered by version
number, the highest wins. An instant before every version's start has no plan in force.

Times are compared as strings: contract times have one fixed width and format
(``2026-11-22T10:00:00.000Z``), so their order as text is their order in time, and the hot
path parses nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Protocol

from charger.rating.model import RatePlan

__all__ = ["PlanSource", "PlanVersions", "by_id", "parse_record_key", "record_key"]

# Not a character of plan ids (see model.check_plan_id), so "<id>@<version>" is unambiguous.
_VERSION_MARK = "@"


class PlanSource(Protocol):
    """Something that answers "which plan is in force at this time": a plan or its versions."""

    def at(self, time: str) -> RatePlan | None: ...


class PlanVersions:
    """The versions of one plan id, ordered by when they start."""

    __slots__ = ("_always", "_starts", "id", "versions")

    def __init__(self, versions: Iterable[RatePlan]) -> None:
        ordered = sorted(versions, key=lambda p: (p.effective_from or "", p.version))
        if not ordered:
            raise ValueError("a plan id needs at least one version")
        self.id = ordered[0].id
        numbers = [p.version for p in ordered]
        if any(p.id != self.id for p in ordered) or len(set(numbers)) != len(numbers):
            raise ValueError(f"versions of plan {self.id!r} must share the id, one per number")
        self.versions = tuple(ordered)
        # "" sorts before every contract time: a version without a start is always in force.
        self._starts = tuple(p.effective_from or "" for p in ordered)
        # The common case, one version for all time, answers without a search.
        only = ordered[0]
        self._always = only if len(ordered) == 1 and only.effective_from is None else None

    def at(self, time: str) -> RatePlan | None:
        """The version in force at contract time ``time`` (its start counts), or None."""
        always = self._always
        if always is not None:
            return always
        i = bisect_right(self._starts, time)
        return self.versions[i - 1] if i else None

    @property
    def latest(self) -> RatePlan:
        """The version that starts last (in force from then on)."""
        return self.versions[-1]

    def __repr__(self) -> str:
        shown = ", ".join(f"v{p.version}@{p.effective_from or '-'}" for p in self.versions)
        return f"PlanVersions({self.id!r}: {shown})"


def by_id(plans: Iterable[RatePlan]) -> dict[str, PlanVersions]:
    """Group plan versions by plan id; ValueError if an (id, version) pair repeats."""
    groups: dict[str, list[RatePlan]] = {}
    for plan in plans:
        groups.setdefault(plan.id, []).append(plan)
    return {plan_id: PlanVersions(group) for plan_id, group in groups.items()}


def record_key(plan_id: str, version: int) -> str:
    """The `billing.rate-plans` key of a plan version: the id, or ``<id>@<version>``.

    Compaction keeps the last record of each key, so every version needs its own key to
    survive it; a plan without versions keeps the bare id, as before versions existed.
    """
    return plan_id if version == 0 else f"{plan_id}{_VERSION_MARK}{version}"


def parse_record_key(key: str) -> tuple[str, int]:
    """(plan id, version) of a record key; ValueError if the version part is not a number."""
    plan_id, mark, number = key.partition(_VERSION_MARK)
    if not mark:
        return plan_id, 0
    if not (number.isascii() and number.isdigit()) or number.startswith("0"):
        raise ValueError(f"key {key!r}: the part after {_VERSION_MARK!r} must be a version >= 1")
    return plan_id, int(number)
