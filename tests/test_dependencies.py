"""Declare what you import, import what you declare: pyproject.toml against the packages' imports."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("synapse_steps", "ray_backend")
RUNTIME_EXTRAS = ("ray", "postgres", "blobs")  # what the packages may import; the rest is tests and tools
# Imported only to say which extra to install when it is missing (ray:// needs "ray[client]").
PROBED_ONLY = {"grpc"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(package: str) -> set[str]:
    """Top-level names of every third-party module the package imports, lazily imported ones included."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in PACKAGES}


def distributions_of(modules: set[str]) -> set[str]:
    providers = importlib.metadata.packages_distributions()
    return {normalized(dist) for module in modules for dist in providers.get(module, [module])}


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalized(Requirement(text).name) for text in requirements}


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CORE = requirement_names(PROJECT["dependencies"])
EXTRAS = {name: requirement_names(PROJECT["optional-dependencies"][name]) for name in RUNTIME_EXTRAS}


def test_every_imported_distribution_is_declared() -> None:
    modules = set().union(*(imported_modules(p) for p in PACKAGES)) - PROBED_ONLY
    undeclared = distributions_of(modules) - CORE - set().union(*EXTRAS.values())
    assert undeclared == set()


def test_every_core_dependency_is_imported_by_the_core_package() -> None:
    assert CORE - distributions_of(imported_modules("synapse_steps")) == set()


def test_every_runtime_extra_is_imported() -> None:
    imported = distributions_of(set().union(*(imported_modules(p) for p in PACKAGES)))
    assert {name: extra - imported for name, extra in EXTRAS.items()} == {name: set() for name in EXTRAS}
