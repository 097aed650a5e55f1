"""The dependencies are declared in three places: the packages (pyproject.toml, and the workloads' client's
clients/python/pyproject.toml with its extras: lower bounds), the Lambda layer (shared/requirements.txt,
what ships) and the development pins (requirements-dev.txt, what every test runs against). They must
agree, or the tests prove a version that does not ship."""

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.paths import ROOT


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_the_layer_ships_exactly_what_the_tests_run_against():
    layer, dev = pins(ROOT / "shared" / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert {name: dev.get(name) for name in layer} == layer


def declared(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return [
        *project["dependencies"],
        *(r for extra in project.get("optional-dependencies", {}).values() for r in extra),
    ]


@pytest.mark.parametrize("pyproject", ["pyproject.toml", "clients/python/pyproject.toml"])
def test_every_pin_satisfies_the_packages_declared_bounds(pyproject):
    dev = pins(ROOT / "requirements-dev.txt")
    for requirement in map(Requirement, declared(ROOT / pyproject)):
        name = requirement.name.lower().replace("_", "-")
        assert name in dev, f"{name} is a dependency but not pinned for development"
        assert requirement.specifier.contains(dev[name]), f"{name}=={dev[name]} is outside {requirement.specifier}"
