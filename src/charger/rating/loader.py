"""Load rate plans from YAML/JSON files or a directory of them.

The readers are strict: a plan file that says ``per_minute`` twice is ambiguous, and stock
loaders silently keep the last value, which is how a price typo ships. Repeated keys,
NaN/Infinity and malformed files raise :class:`PlanError` naming the file. What the values
mean is decided by :func:`charger.rating.plans.plan_from_dict`.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from charger.rating.model import RatePlan
from charger.rating.plans import PlanError, plan_from_dict

__all__ = ["PLAN_SUFFIXES", "load_plan_versions", "load_plans", "read_document", "strict_json"]

PLAN_SUFFIXES = frozenset({".yaml", ".yml", ".json"})

# The C loader is much faster on large plan sets; the pure one behaves identically.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe YAML loader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # resolve '<<' merges first so they do not look repeated
        seen: set[Hashable] = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable):
                if key in seen:
                    raise ValueError(f"repeated key {key!r} at line {key_node.start_mark.line + 1}")
                seen.add(key)
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"repeated key {key!r}")
        result[key] = value
    return result


def _json_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's reader accepts them unless told otherwise.
    raise ValueError(f"{name} is not a valid JSON value")


def strict_json(text: str | bytes) -> Any:
    """Parse JSON refusing repeated keys and NaN/Infinity; raise :class:`ValueError`."""
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None


def read_document(path: Path) -> Any:
    """Parse one ``.yaml``/``.yml``/``.json`` file; raise :class:`ValueError` if malformed."""
    suffix = path.suffix.lower()
    if suffix not in PLAN_SUFFIXES:
        raise ValueError(f"unsupported plan file type {path.suffix!r}: use .yaml, .yml or .json")
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        return strict_json(text)
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from exc


def _plans_in_file(file: Path) -> Iterator[RatePlan]:
    source = str(file)
    try:
        doc = read_document(file)
    except ValueError as exc:
        raise PlanError(None, None, str(exc), source=source) from None
    if isinstance(doc, Mapping) and "id" not in doc and "plans" in doc:
        if set(doc) != {"plans"}:
            raise PlanError(None, None, "a {plans: [...]} file holds nothing else", source=source)
        doc = doc["plans"]
    if isinstance(doc, Mapping):
        doc = [doc]
    if not isinstance(doc, list) or not doc:
        raise PlanError(
            None, None, "expected a plan, a list of plans or {plans: [...]}", source=source
        )
    for position, item in enumerate(doc):
        try:
            yield plan_from_dict(item)
        except PlanError as exc:
            raise exc.with_source(source, f"#{position + 1}") from None


def load_plan_versions(path: Path) -> list[RatePlan]:
    """Load every plan version in a plan file, or in the plan files directly inside a directory.

    Files are read in name order; hidden files and other suffixes in a directory are skipped.
    An id may appear once per ``version``; the same id and version twice, in one file or
    across files, raises :class:`PlanError`.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in PLAN_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise PlanError(None, None, "no .yaml, .yml or .json plan files", source=str(path))
    else:
        files = [path]
    plans: list[RatePlan] = []
    origin: dict[tuple[str, int], Path] = {}
    for file in files:
        for plan in _plans_in_file(file):
            where = (plan.id, plan.version)
            if where in origin:
                what = "plan id" if plan.version == 0 else f"plan id and version {plan.version}"
                raise PlanError(
                    plan.id,
                    "id",
                    f"duplicate {what} (first defined in {origin[where]})",
                    source=str(file),
                )
            plans.append(plan)
            origin[where] = file
    return plans


def load_plans(path: Path) -> dict[str, RatePlan]:
    """Like :func:`load_plan_versions` for plan files with one version per id, by id.

    An id with several versions raises :class:`PlanError`: which one to return would be a
    guess (the worker reads every version with :func:`load_plan_versions`).
    """
    plans: dict[str, RatePlan] = {}
    for plan in load_plan_versions(path):
        if plan.id in plans:
            raise PlanError(
                plan.id, "version", "several versions: read them with load_plan_versions"
            )
        plans[plan.id] = plan
    return plans
