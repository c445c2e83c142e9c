"""Packaging: the floors `make test-floors` installs are the floors pyproject.toml declares,
and the distribution carries its licence, classifiers and addresses."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def project() -> dict[str, Any]:
    doc: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return doc["project"]  # type: ignore[no-any-return]


def declared_floors() -> dict[str, Version]:
    """Each runtime dependency's lowest admitted version (its `>=` bound)."""
    floors = {}
    for line in project()["dependencies"]:
        requirement = Requirement(line)
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{line}: one `>=` floor per dependency"
        floors[canonicalize_name(requirement.name)] = Version(lower[0])
    return floors


def pinned_floors() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def test_the_constraints_pin_exactly_the_declared_floors() -> None:
    assert pinned_floors() == declared_floors()


def test_the_floors_a_known_need_sets() -> None:
    """The versions below which the worker breaks (measured; see constraints/floors.txt)."""
    floors = declared_floors()
    # CONTENT_TYPE_PLAIN_0_0_4 (app.py); 0.23.0 was yanked.
    assert floors["prometheus-client"] == Version("0.23.1")
    assert floors["redis"] == Version("5.0.1")  # asyncio clients' aclose()
    assert floors["orjson"] == Version("3.9.15")  # a parser that refuses deep nesting
    assert floors["faust-streaming"] == Version("0.11.2")  # CreateTopics of aiokafka 0.11


def test_licence_classifiers_and_addresses() -> None:
    meta = project()
    licence = (ROOT / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    # An SPDX expression and the file: a table and licence classifiers are deprecated, and
    # setuptools refuses to build a project still using them from 2027-02-18.
    assert meta["license"] == "Apache-2.0"
    assert meta["license-files"] == ["LICENSE"]
    classifiers = meta["classifiers"]
    assert not [c for c in classifiers if c.startswith("License ::")]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert "setuptools>=77" in build["requires"]  # the first to read an SPDX licence
    assert f"Programming Language :: Python :: {meta['requires-python'][2:]}" in classifiers
    assert {"Homepage", "Source", "Issues"} <= set(meta["urls"])
    assert all(url.startswith("https://") for url in meta["urls"].values())


def test_every_top_level_package_is_named_for_charger() -> None:
    """What `pip install charger` puts in site-packages can clash with no other distribution:
    the contract's folder is src/topics, its package `charger_topics` (src/topics/README.md)."""
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        package: where
        for where in config["packages"]["find"]["where"]
        for package in find_packages(ROOT / where, include=config["packages"]["find"]["include"])
    }
    top_level = {package.split(".")[0] for package in found}
    assert top_level == {"charger", "charger_tools", "charger_topics"}
    assert found["charger_topics"] == "src/topics"
    assert set(config["package-data"]) == top_level


def test_the_contract_is_imported_from_its_folder() -> None:
    import importlib.util

    import charger_topics

    assert Path(charger_topics.__file__).parent == ROOT / "src" / "topics" / "charger_topics"
    # No package called `topics`: at most the folder itself, as a namespace without code,
    # when `src` is on the path of a source checkout.
    spec = importlib.util.find_spec("topics")
    assert spec is None or spec.origin is None
